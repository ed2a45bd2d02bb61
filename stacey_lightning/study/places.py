"""Places in a study: ``n_trials`` is the number of COMPLETE and PRUNED trials the study should end with.

FAIL trials never count (a failure is not a result). A trial is *surplus* when n_trials trials that are
finished, running or waiting come before it (by trial number, which Optuna gives densely: a worker that
holds trial k sees every trial below it); its worker fails it before training (``SURPLUS``). With
budget.py, the counts ``admission`` decides from.
"""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import SURPLUS

__all__ = ["finished", "study_is_full", "is_surplus"]


def finished(trials: list[FrozenTrial]) -> int:
    """The trials that count towards n_trials: COMPLETE and PRUNED."""
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))


def _holds_a_place(trial: FrozenTrial) -> bool:
    """Finished, running or waiting to run, and not surplus: one of the study's n_trials places."""
    return trial.state in (
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.RUNNING,
        TrialState.WAITING,
    ) and not trial.user_attrs.get(SURPLUS)


def study_is_full(trials: list[FrozenTrial], n_trials: int) -> bool:
    """True when n_trials trials are finished or running, so that no trial is left to start."""
    running = [t for t in trials if t.state == TrialState.RUNNING and not t.user_attrs.get(SURPLUS)]
    return finished(trials) + len(running) >= n_trials


def is_surplus(trials: list[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial ``number`` comes after the study's first n_trials places (by trial number)."""
    return sum(1 for t in trials if t.number < number and _holds_a_place(t)) >= n_trials
