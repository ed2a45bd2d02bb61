import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState
from tuning_tasks import FAST, TINY

from stacey_lightning.attributes import SURPLUS
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.tuner import TooManyFailures, mask_password, tune


def _states(study):
    return sorted(t.state.name for t in study.trials)


def test_resume_to_total_writes_best_yaml_and_tensorboard(tmp_path, capsys):
    study = tune("digits", n_trials=2, output_dir=tmp_path, task_options=TINY, **FAST)
    assert len(study.trials) == 2
    study = tune("digits", n_trials=3, output_dir=tmp_path, task_options=TINY, **FAST)
    assert len(study.trials) == 3 and all(t.state.is_finished() for t in study.trials)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 3  # the resume did not redraw
    out = capsys.readouterr().out
    assert "trial 3 of 3" in out and "best so far" in out
    # The table shows the anchor each trial ran, p, lr, alpha, then every other key the trials vary
    # (issue 12), then the metric.
    header = next(line for line in out.splitlines() if line.startswith("| trial |"))
    assert header.startswith("| trial | anchor | p | lr | alpha |") and header.endswith("| val_acc |")
    best = StaceyConfig.from_source(tmp_path / "best.yaml")
    assert best.to_dict() == study.best_trial.user_attrs["stacey_config"]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = tmp_path / "tensorboard" / "digits" / f"trial-{study.best_trial.number}"
    events = EventAccumulator(str(run))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train_loss", "val_acc", "val_loss", "hp/val_acc"} <= set(scalars)
    assert events.Scalars("hp/val_acc")[-1].value == pytest.approx(study.best_value)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["state"].string_value == "COMPLETE"
    # The sampled parameters and the config they resolved to (the default space samples lr as a step).
    assert hparams["step"].number_value == pytest.approx(study.best_trial.params["step"])
    assert hparams["lr"].number_value == pytest.approx(best.lr)
    assert hparams["p"].number_value == pytest.approx(float(best.p))


def test_nan_loss_is_pruned_with_reason_and_study_goes_on(tmp_path):
    study = tune(
        "tuning_tasks:make_nan", n_trials=2, output_dir=tmp_path, monitor="val_acc", direction="maximize", **FAST
    )
    assert _states(study) == ["PRUNED", "PRUNED"]
    assert all("non-finite training loss" in t.user_attrs["stop_reason"] for t in study.trials)
    assert not (tmp_path / "best.yaml").exists()


def test_failing_task_is_recorded_and_too_many_failures_stop(tmp_path):
    study = tune(
        "tuning_tasks:make_failing_first",
        n_trials=2,
        output_dir=tmp_path / "a",
        monitor="val_acc",
        direction="maximize",
        pruner="none",  # every good trial completes
        **FAST,
    )
    # A failed trial does not count towards n_trials (issue 12): two good trials besides the failure.
    assert _states(study) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert "task failure on purpose" in study.trials[0].user_attrs["traceback"]
    assert study.trials[0].user_attrs["fail_reason"] == "RuntimeError: task failure on purpose"
    with pytest.raises(TooManyFailures, match="2 trials in a row failed"):
        tune("tuning_tasks:make_always_failing", n_trials=5, output_dir=tmp_path / "b", max_consecutive_failures=2)


def test_bad_space_fails_before_any_trial(tmp_path):
    (tmp_path / "space.yaml").write_text("p: {distribution: p_exponent, low: 0.5, high: 4}\n")
    with pytest.raises(ValueError, match="space.yaml: p: p must be > 1"):
        tune("digits", space=tmp_path / "space.yaml", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resuming_under_another_search_space_is_refused_before_any_trial(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(
        "p: {distribution: p_exponent, low: 2, high: .inf}\n"
        "lr: {distribution: coordinate_step, low: 1.0e-4, high: 1.0e-2}\n"
    )
    study = tune("digits", space=space, n_trials=1, output_dir=tmp_path / "out", task_options=TINY, **FAST)
    space.write_text(space.read_text().replace("high: 1.0e-2", "high: 3.0e-2") + "anchor_step: 3.0e-3\n")
    with pytest.raises(
        ValueError,
        match=r"^space: study 'digits' was started with another search space \(changed: "
        r"anchor_step, lr\); resume it with the space it started with, or use another study name$",
    ):
        tune("digits", space=space, n_trials=2, output_dir=tmp_path / "out", task_options=TINY, **FAST)
    storage = f"sqlite:///{(tmp_path / 'out').resolve()}/optuna.db"
    stored = optuna.load_study(study_name="digits", storage=storage)
    assert len(study.trials) == len(stored.trials) == 1
    # A space recorded in another format (an earlier version's) is re-recorded, not compared.
    stored.set_user_attr("space", {key: value for key, value in stored.user_attrs["space"].items() if key != "_format"})
    study = tune("digits", space=space, n_trials=2, output_dir=tmp_path / "out", task_options=TINY, **FAST)
    assert len(study.trials) == 2 and study.user_attrs["space"]["anchor_step"] == "0.003"


def test_mask_password():
    assert mask_password("postgresql://me:s3cret@db:5432/x") == "postgresql://me:***@db:5432/x"
    assert mask_password("sqlite:///a.db") == "sqlite:///a.db"


def _tune_command(output, n_trials, extra=""):
    return [
        sys.executable,
        "-c",
        "from stacey_lightning.tuner import tune; "
        f"tune('tuning_tasks:make_hanging_second', n_trials={n_trials}, output_dir={str(output)!r}, "
        f"monitor='val_acc', direction='maximize', max_epochs=1{extra})",
    ]


@pytest.mark.slow
def test_sigkilled_worker_trial_is_failed_and_requeued(tmp_path, subprocess_env):
    marker = tmp_path / "hanging"
    worker = subprocess.Popen(
        _tune_command(tmp_path, 3),
        env={**subprocess_env, "STACEY_TEST_HANG": str(marker)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert worker.poll() is None and time.monotonic() < deadline, "the worker never reached trial 1"
            time.sleep(0.2)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    study = tune(
        "tuning_tasks:make_hanging_second",
        n_trials=3,
        output_dir=tmp_path,
        monitor="val_acc",
        direction="maximize",
        max_epochs=1,
    )
    dead = study.trials[1]
    assert dead.state == TrialState.FAIL and "died" in dead.user_attrs["fail_reason"]
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == dead.params
    assert _states(study).count("COMPLETE") + _states(study).count("PRUNED") == 3


@pytest.fixture(params=["journal", "postgres"])
def shared_storage(request, tmp_path):
    """A storage that several processes share: a journal file, and a PostgreSQL server where one is given."""
    if request.param == "journal":
        return f"journal:{tmp_path / 'journal.log'}"
    return request.getfixturevalue("postgres_url")


@pytest.mark.slow
def test_two_workers_share_journal_and_postgres_storages(tmp_path, capsys, shared_storage):
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    study = tune(
        "tuning_tasks:make_rendezvous", n_trials=3, workers=2, storage=shared_storage, monitor="val_acc",
        direction="maximize", study_name=f"two-workers-{os.getpid()}", output_dir=tmp_path / "out",
        task_options={"rendezvous_dir": str(rendezvous)}, **{**FAST, "max_epochs": 1},
    )  # fmt: skip
    # Two workers that look at a study with one place left at the same moment both ask for a trial; the
    # later one is failed as surplus before it trains (study/admission.py), so the study holds exactly 3 trained.
    trained = [t for t in study.trials if not t.user_attrs.get(SURPLUS)]
    surplus = [t for t in study.trials if t.user_attrs.get(SURPLUS)]
    assert len(trained) == 3 and all(t.state.is_finished() for t in trained)
    assert all(t.state == TrialState.FAIL and not t.intermediate_values for t in surplus)
    assert len({tuple(sorted(t.params.items())) for t in trained}) == 3
    pids = {t.user_attrs["pid"] for t in trained}
    assert os.getpid() not in pids and len(pids) == 2  # both worker processes trained trials
    out = capsys.readouterr().out
    if "@" in shared_storage:
        password = shared_storage.split("://", 1)[1].split("@")[0].split(":", 1)[1]
        assert password not in out and "***" in out


def test_per_kind_p_and_geometry_reach_the_table_and_tensorboard(tmp_path, capsys):
    space = {"p": {"distribution": "p_exponent", "low": 2.0, "high": 4.0}, "lr": 0.03,
             "kinds": {"matrix": {"p": {"distribution": "p_exponent", "low": 4.0, "high": 8.0}}}}  # fmt: skip
    study = tune("digits", space=space, n_trials=1, output_dir=tmp_path, task_options=TINY, geometry=True, **FAST)
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| trial |"))
    assert header.startswith("| trial | anchor | p | kinds.matrix.p | lr |")
    config = study.best_trial.user_attrs["stacey_config"]
    assert 4.0 <= config["kinds"]["matrix"]["p"] <= 8.0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(tmp_path / "tensorboard" / "digits" / "trial-0"))
    events.Reload()
    assert {"stacey/matrix/p", "stacey/matrix/x_minus_z_norm", "stacey/vector/step_norm"} <= set(
        events.Tags()["scalars"]
    )
    assert events.Scalars("stacey/matrix/p")[0].value == pytest.approx(config["kinds"]["matrix"]["p"])
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["kinds.matrix.p"].number_value == pytest.approx(config["kinds"]["matrix"]["p"])
