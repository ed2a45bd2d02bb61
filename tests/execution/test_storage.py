"""Which trials count, when a worker's trial is surplus, and how often a configuration whose worker died is
tried: the rules that keep n_trials exact across processes and hosts (study/places.py, execution/deaths.py)."""

import multiprocessing
import os
import signal
import socket
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from stacey_lightning.attributes import FAIL_REASON, HOSTNAME, PID, RETRY_OF, WORKER_DEATHS
from stacey_lightning.execution.deaths import death_text, fail_dead_trials, requeue
from stacey_lightning.execution.storage import dashboard_hint, open_storage
from stacey_lightning.study.places import finished, is_surplus, study_is_full


def _study(states):
    """Frozen trials numbered 0, 1, ... in the given states ("surplus": failed and marked surplus)."""
    trials = []
    for number, state in enumerate(states):
        surplus = state == "surplus"
        state = TrialState.FAIL if surplus else state
        trial = optuna.trial.create_trial(
            state=state,
            value=1.0 if state == TrialState.COMPLETE else None,
            user_attrs={"surplus": True} if surplus else {},
        )
        trial.number = number
        trials.append(trial)
    return trials


def test_failed_and_surplus_trials_never_count():
    trials = _study([TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, "surplus", TrialState.RUNNING])
    assert finished(trials) == 2
    assert not study_is_full(trials, 4) and study_is_full(trials, 3)


def test_the_first_n_trials_holding_a_place_run_and_later_ones_are_surplus():
    # 0 complete, 1 failed, 2 running, 3 waiting (enqueued), 4 just asked for by a second worker.
    trials = _study([TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING, TrialState.RUNNING])
    assert not is_surplus(trials, 3, n_trials=3)  # the waiting trial is the third place
    assert is_surplus(trials, 4, n_trials=3)  # complete, running and waiting came before it
    assert not is_surplus(trials, 4, n_trials=4)


def test_dashboard_hint_matches_what_optuna_dashboard_takes():
    assert dashboard_hint("journal:/tmp/x.log") == "optuna-dashboard /tmp/x.log"
    assert dashboard_hint("sqlite:///runs/optuna.db") == "optuna-dashboard sqlite:///runs/optuna.db"
    assert dashboard_hint("postgresql://u:pw@h/db") == "optuna-dashboard postgresql://u:***@h/db"


def _take_all(url, barrier, results):
    study = optuna.load_study(study_name="race", storage=open_storage(url))
    barrier.wait()  # both processes ask at the same moment
    taken = []
    for _ in range(30):
        trial = study.ask()
        taken.append(trial.number)
        study.tell(trial, 1.0)
    results.put(taken)


def test_two_processes_never_take_the_same_enqueued_trial_from_sqlite(tmp_path):
    """SQLite reads WAITING and writes RUNNING without a lock between: two processes took 7 of 100
    enqueued trials both, before the take lock (outage.py)."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for x in range(60):
        study.enqueue_trial({"x": x})
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_take_all, args=(url, barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    taken = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0, 0]
    assert sorted(taken[0] + taken[1]) == list(range(60))  # each enqueued trial taken once


def _ended_process() -> int:
    """The pid of a process of this host that has ended: a dead worker's."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


def _take(study: optuna.Study, pid: int) -> optuna.Trial:
    """The next trial, taken as worker process ``pid`` of this host takes it (workers.py records both)."""
    trial = study.ask({"x": FloatDistribution(0.0, 2.0)})
    trial.set_user_attr(HOSTNAME, socket.gethostname())
    trial.set_user_attr(PID, pid)
    return trial


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # fail_stale_trials
def test_a_config_whose_worker_is_killed_is_tried_twice_then_failed_with_the_signal(capsys):
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"x": 1.0})
    pid = _ended_process()
    _take(study, pid)
    fail_dead_trials(study, ended=(pid, -signal.SIGKILL))  # from the parent, which saw how it ended
    first, retry = study.get_trials()
    assert first.state == TrialState.FAIL and first.user_attrs[FAIL_REASON] == "killed by signal 9: out of memory?"
    assert retry.state == TrialState.WAITING and retry.system_attrs["fixed_params"] == {"x": 1.0}
    assert retry.user_attrs[RETRY_OF] == 0 and retry.user_attrs[WORKER_DEATHS] == [-9]

    pid = _ended_process()
    assert _take(study, pid).number == 1
    fail_dead_trials(study, ended=(pid, -signal.SIGKILL))
    trials = study.get_trials()
    assert len(trials) == 2, "a third try was enqueued"
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs[FAIL_REASON] == "killed by signal 9 twice: out of memory?"
    out = capsys.readouterr().out
    assert "trial 0: its worker (pid" in out and "was killed by signal 9: out of memory?; failed and re-queued" in out
    assert "trial 1 FAIL: killed by signal 9 twice: out of memory?; not tried again" in out


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_in_one_process_deaths_count_across_runs_and_interruptions_do_not(capsys):
    """--workers 1: a kill ends the command, and the next run finds the trial's process gone (how, it cannot
    know); Ctrl-C re-queues a trial without counting a try."""
    study = optuna.create_study(direction="maximize")
    rung = {"anchor": "muon-like step 0.003, embeddings x3, tau_horizon 1", "ladder": "muon-like", "ladder_step": 3e-3,
            "ladder_rest": 1.0, "ladder_embedding": 3.0, "ladder_coupling": 1.0}  # fmt: skip
    study.enqueue_trial({"x": 1.0}, user_attrs=rung)
    _take(study, _ended_process())
    fail_dead_trials(study)  # the next run of the command
    assert study.trials[0].user_attrs[FAIL_REASON] == "died: out of memory, or a crash in compiled code?"
    assert rung.items() <= study.trials[1].user_attrs.items()  # the retry is the same anchor, the same rung
    interrupted = _take(study, os.getpid())
    interrupted.set_user_attr(FAIL_REASON, "interrupted (Ctrl-C)")
    study.tell(interrupted, state=TrialState.FAIL)
    requeue(study, study.trials[1])  # as trial.py does on Ctrl-C
    assert study.trials[2].user_attrs[WORKER_DEATHS] == [None]
    _take(study, _ended_process())
    fail_dead_trials(study)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 3, "a third try was enqueued"
    assert trials[2].user_attrs[FAIL_REASON] == "died twice: out of memory, or a crash in compiled code?"
    assert "trial 2 FAIL: died twice" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "waitid"), reason="needs os.waitid (POSIX; macOS from Python 3.13)")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_worker_not_yet_reaped_is_left_to_its_parent_which_knows_how_it_ended():
    study = optuna.create_study(direction="maximize")
    segfaulting = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    os.waitid(os.P_PID, segfaulting.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: a zombie
    _take(study, segfaulting.pid)
    fail_dead_trials(study)  # another worker: the zombie looks alive, so it leaves the trial alone
    assert study.trials[0].state == TrialState.RUNNING
    fail_dead_trials(study, ended=(segfaulting.pid, -signal.SIGSEGV))  # the parent
    assert study.trials[0].user_attrs[FAIL_REASON] == "killed by signal 11: a crash in compiled code?"
    assert segfaulting.wait() == -signal.SIGSEGV


@pytest.mark.parametrize(
    "deaths, text",
    [
        ([-9], "killed by signal 9: out of memory?"),
        ([-9, -9], "killed by signal 9 twice: out of memory?"),
        ([-11, -11, -11], "killed by signal 11 3 times: a crash in compiled code?"),
        ([None, -9], "died, then killed by signal 9: out of memory?"),
        ([-9, 3], "killed by signal 9, then exited with status 3"),
        ([-15], "killed by signal 15"),
    ],
)
def test_death_text(deaths, text):
    assert death_text(deaths) == text
