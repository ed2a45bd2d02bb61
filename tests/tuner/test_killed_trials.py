"""Configurations that take their worker process down, as the kernel's OOM killer does (SIGKILL): one
command finishes the study, and no configuration is tried more than twice (issue 26; the rules are
execution/deaths.py's, the supervision of worker processes execution/supervisor.py's)."""

import collections
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState

from stacey_lightning.attributes import FAIL_REASON, SURPLUS
from stacey_lightning.cli import tune_main
from stacey_lightning.execution.storage import open_storage
from stacey_lightning.tuner import TooManyFailures, tune

# p = inf trials (the Lion-like and Muon-like anchors) SIGKILL their process in their first training step.
_TASK = "dying_tasks:make_killed_at_p_inf"
_FAST = [
    "--max-epochs", "1", "--trainer", "limit_train_batches=10", "--trainer", "limit_val_batches=3",
    "--monitor", "val_acc", "--direction", "maximize", "--accelerator", "cpu",
]  # fmt: skip
_TWICE = "killed by signal 9 twice: out of memory?"


def _killed_configs(trials):
    """How often each configuration that a kill ended was tried (trials that trained, or began to)."""
    killed = {tuple(sorted(t.params.items())) for t in trials if t.user_attrs.get(FAIL_REASON, "").startswith("killed")}
    tried = [t for t in trials if not t.user_attrs.get(SURPLUS) and t.state != TrialState.WAITING]
    return collections.Counter(key for t in tried if (key := tuple(sorted(t.params.items()))) in killed)


@pytest.fixture(params=[("sqlite", 6), ("journal", 2), ("postgres", 2)], ids=["sqlite", "journal", "postgres"])
def storage(request, tmp_path):
    """A storage, and how many trials the study on it wants (fewer where only the storage differs)."""
    kind, n_trials = request.param
    if kind == "sqlite":
        return f"sqlite:///{tmp_path.resolve()}/optuna.db", n_trials  # the default: <output>/optuna.db
    if kind == "journal":
        return f"journal:{tmp_path / 'journal.log'}", n_trials
    return request.getfixturevalue("postgres_url"), n_trials


@pytest.mark.slow
def test_one_command_finishes_a_study_whose_configs_kill_their_workers(tmp_path, capfd, storage):
    url, n_trials = storage
    name = f"killed-{tmp_path.name}"
    argv = [
        "--task", _TASK, "--n-trials", str(n_trials), "--workers", "2", "--storage", url, "--study-name", name,
        "--output", str(tmp_path / "out"), *_FAST,
    ]  # fmt: skip
    assert tune_main(argv) == 0
    out = capfd.readouterr().out
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    # The killed configurations are FAIL trials, which do not count: the study ends with n_trials others.
    states = collections.Counter(t.state for t in trials if not t.user_attrs.get(SURPLUS))
    assert states[TrialState.COMPLETE] + states[TrialState.PRUNED] == n_trials, states
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0, states
    tries = _killed_configs(trials)
    assert tries and set(tries.values()) == {2}, tries  # the Lion-like anchors (p = inf), each tried twice
    assert sorted(t.user_attrs["worker_deaths"] for t in trials if t.user_attrs.get(FAIL_REASON) == _TWICE) == [
        [-9]
    ] * len(tries)
    assert out.count(f"FAIL: {_TWICE}; not tried again") == len(tries), out
    assert "starting another in its place" in out


@pytest.mark.slow
def test_workers_dying_in_a_row_are_not_replaced_forever(tmp_path, capfd):
    with pytest.raises(TooManyFailures, match=r"stopping: [23] worker processes died in a row with no trial finishing"):
        tune(
            "dying_tasks:make_always_killed", n_trials=2, workers=2, max_consecutive_failures=2, anchors=False,
            output_dir=tmp_path, max_epochs=1, monitor="val_acc", direction="maximize",
            trainer_kwargs={"limit_train_batches": 10, "limit_val_batches": 3},
        )  # fmt: skip
    assert "not replaced: 2 died in a row" in capfd.readouterr().out


@pytest.mark.slow
def test_with_one_worker_a_kill_ends_the_command_and_its_next_runs_try_the_config_twice_in_all(
    tmp_path, subprocess_env
):
    """--workers 1 trains in the command's own process, which the kill ends; each run of the command fails
    the trial the last one left running, and re-queues it once only."""
    command = [
        sys.executable, "-m", "stacey_lightning", "tune", "--task", _TASK, "--n-trials", "1", "--no-confirm",
        "--study-name", "one", "--output", str(tmp_path), *_FAST,
    ]  # fmt: skip
    runs = [subprocess.run(command, env=subprocess_env, capture_output=True, text=True) for _ in range(3)]
    assert [run.returncode for run in runs] == [-9, -9, 0], runs[-1].stderr
    assert "trial 0: its worker (pid" in runs[1].stdout and "died: out of memory" in runs[1].stdout
    assert "trial 1 FAIL: died twice: out of memory, or a crash in compiled code?; not tried again" in runs[2].stdout
    trials = optuna.load_study(study_name="one", storage=f"sqlite:///{tmp_path}/optuna.db").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].params == trials[0].params
