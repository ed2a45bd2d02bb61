"""Which trials count, and when a worker's trial is surplus: the rules that keep n_trials exact across
processes and hosts (stacey_lightning/tuner/storage.py)."""

import multiprocessing

import optuna
from optuna.trial import TrialState

from stacey_lightning.tuner.storage import dashboard_hint, finished, is_surplus, open_storage, study_is_full


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
