"""The tuner's fault behaviour (issue 4): Ctrl-C, and heartbeat recovery of another host's dead trial (tried
twice at most, issue 26)."""

import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.trial import TrialState
from tuning_tasks import FAST, TINY

from stacey_lightning.cli import tune_main
from stacey_lightning.execution import storage as execution_storage
from stacey_lightning.execution.deaths import fail_dead_trials
from stacey_lightning.execution.storage import open_storage
from stacey_lightning.search.space import SearchSpace
from stacey_lightning.study.places import finished
from stacey_lightning.tuner.tuning import tune


def _finished(study):
    """Trials that count towards n_trials, as the tuner counts them."""
    return finished(study.get_trials(deepcopy=False))


def _wait_for_running_trial(worker, storage, marker):
    """Polls the storage until trial 0 has finished and trial 1 is running (its fit has started)."""
    deadline = time.monotonic() + 240
    while True:
        assert worker.poll() is None, f"the worker exited early:\n{worker.communicate()[0]}"
        assert time.monotonic() < deadline, "the worker never reached trial 1"
        if marker.exists():
            try:
                trials = optuna.load_study(study_name="digits", storage=storage).get_trials(deepcopy=False)
            except KeyError:  # the study is not created yet
                trials = []
            if len(trials) == 2 and trials[0].state.is_finished() and trials[1].state == TrialState.RUNNING:
                return
        time.sleep(0.2)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_requeues_the_running_one_and_resumes(tmp_path, subprocess_env):
    argv = [
        "tune",
        "--task",
        "tuning_tasks:make_hanging_second",
        "--n-trials",
        "2",
        "--max-epochs",
        "1",
        "--monitor",
        "val_acc",
        "--direction",
        "maximize",
        "--study-name",
        "digits",
        "--output",
        str(tmp_path),
    ]
    storage = f"sqlite:///{tmp_path.resolve()}/optuna.db"
    marker = tmp_path / "hanging"  # trial 1 hangs in on_fit_start while this is set
    worker = subprocess.Popen(
        [sys.executable, "-m", "stacey_lightning", *argv],
        # PYTHONFAULTHANDLER: a worker that does not stop is made to print every thread's stack (below).
        env={**subprocess_env, "STACEY_TEST_HANG": str(marker), "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Ctrl-C as a terminal delivers it: a test run started in the background (`cmd &` in a script,
        # as some CI runners do) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for_running_trial(worker, storage, marker)
        worker.send_signal(signal.SIGINT)
        try:
            out, _ = worker.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            worker.send_signal(signal.SIGABRT)
            stacks = worker.communicate()[0]
            pytest.fail(f"the worker did not stop within 240 s of Ctrl-C; its output and stacks:\n{stacks}")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 130, out  # 128 + SIGINT, as shells report an interrupted command
    assert "interrupted: every finished trial is kept; run the same command to resume" in out
    assert "Traceback" not in out, out

    trials = optuna.load_study(study_name="digits", storage=storage).get_trials()
    assert trials[0].state == TrialState.COMPLETE
    interrupted = trials[1]
    assert interrupted.state == TrialState.FAIL and "interrupted" in interrupted.user_attrs["fail_reason"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].system_attrs["fixed_params"] == interrupted.params  # where Optuna keeps enqueued parameters
    assert (tmp_path / "best.yaml").is_file()

    # The same command again (here in this process, without the hang) resumes up to --n-trials.
    assert tune_main(argv[1:]) == 0
    study = optuna.load_study(study_name="digits", storage=storage)
    assert study.trials[0].params == trials[0].params and study.trials[0].state == TrialState.COMPLETE
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == 1]
    assert len(retried) == 1 and retried[0].state.is_finished() and retried[0].params == interrupted.params
    assert _finished(study) == 2 and not any(t.state == TrialState.RUNNING for t in study.trials)


@pytest.mark.filterwarnings(
    "ignore::optuna.exceptions.ExperimentalWarning",
    "ignore:Heartbeat of storage is supposed to be used with Study.optimize",
)
def test_heartbeat_fails_and_requeues_a_dead_trial_of_another_host(tmp_path, monkeypatch):
    grace_s = 1
    monkeypatch.setattr(execution_storage, "HEARTBEAT_GRACE_S", grace_s)  # read when tune() opens its storage
    url = f"sqlite:///{tmp_path.resolve()}/optuna.db"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=grace_s)
    study = optuna.create_study(storage=storage, study_name="digits", direction="maximize")
    dead = study.ask()
    SearchSpace.load("default").suggest(dead)  # parameters from the space tune() will use
    dead.set_user_attr("hostname", "another-host.invalid")  # same-host recovery (by pid) must not apply
    dead.set_user_attr("pid", 1)
    storage.record_heartbeat(dead._trial_id)
    # Its worker stopped beating. SQLite's clock (CURRENT_TIMESTAMP) counts whole seconds, so "older than
    # the grace" needs the grace plus a whole second more to be certain (with 0.5 it failed once in CI).
    time.sleep(grace_s + 1.5)

    study = tune("digits", n_trials=2, output_dir=tmp_path, storage=url, task_options=TINY, **FAST)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL and "fail_reason" not in trials[0].user_attrs
    retry = [t for t in trials if t.user_attrs.get("retry_of") == 0]
    assert len(retry) == 1 and retry[0].state.is_finished() and retry[0].params == trials[0].params
    assert retry[0].user_attrs["worker_deaths"] == [None]  # how its worker died is not known
    assert _finished(study) == 2 and not any(t.state == TrialState.RUNNING for t in trials)


@pytest.mark.filterwarnings(
    "ignore::optuna.exceptions.ExperimentalWarning",
    "ignore:Heartbeat of storage is supposed to be used with Study.optimize",
)
def test_a_config_whose_heartbeat_stops_twice_is_not_tried_a_third_time(tmp_path, monkeypatch, capsys):
    grace_s = 1
    monkeypatch.setattr(execution_storage, "HEARTBEAT_GRACE_S", grace_s)
    storage = open_storage(f"sqlite:///{tmp_path.resolve()}/optuna.db")
    study = optuna.create_study(storage=storage, direction="maximize")
    # The retry of a trial whose worker, on another host, died once already.
    study.enqueue_trial({"x": 1.0}, user_attrs={"retry_of": 7, "worker_deaths": [None]})
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 2.0)})
    dead.set_user_attr("hostname", "another-host.invalid")
    storage.record_heartbeat(dead._trial_id)
    time.sleep(grace_s + 1.5)  # SQLite's clock counts whole seconds
    fail_dead_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL], "a third try was enqueued"
    assert "trial 0 FAIL: died twice: out of memory, or a crash in compiled code?; not tried again" in (
        capsys.readouterr().out
    )
