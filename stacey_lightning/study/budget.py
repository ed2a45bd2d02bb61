"""Budgets in what training costs: epochs. ``--budget E`` stops a study once its trials have trained E
epochs in all; ``n_trials`` stays the other limit.

What a trial costs is read from the storage, as the trial count is (places.py), so that workers and
hosts agree: a finished or failed trial costs the epochs it trained (``EPOCHS``, recorded when its fit
ends; a trial killed mid-way, the epochs it reported to the pruner), so a pruned trial costs what it
trained, a resumed study counts what is done, and re-runs on other seeds (confirm.py) count like any
trial. A running trial is counted at ``max_epochs``, the most it can cost: a worker asks for a trial
only while a whole run of ``max_epochs`` still fits. Then, as for ``n_trials`` (places.py), the trial
it got is held to the trials numbered before it (running and waiting ones at ``max_epochs``), so that
two racing workers never both start the run that only one fits: the later one is failed before it
trains (``SURPLUS``). Epochs a pruned trial saves are spent by later trials.

The confirmation runs' share of the budget is reserved out of it (``confirm.search_spec``); where seeds
turn out not to change a task's runs, the runs that have not started go back to the search, which then
counts only what the confirmation runs already hold (``epochs_committed``).
"""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import EPOCHS, SURPLUS

__all__ = ["trial_epochs", "epochs_spent", "epochs_committed", "budget_is_spent", "over_budget"]

_HOLDS_EPOCHS = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING)


def trial_epochs(trial: FrozenTrial, max_epochs: int) -> int:
    """What ``trial`` cost or may still cost, in epochs."""
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return max_epochs
    recorded = trial.user_attrs.get(EPOCHS)
    return int(recorded) if recorded is not None else len(trial.intermediate_values)


def _counted(trial: FrozenTrial) -> bool:
    return trial.state in _HOLDS_EPOCHS and not trial.user_attrs.get(SURPLUS)


def epochs_spent(trials: list[FrozenTrial]) -> int:
    """Epochs trained by the study's trials that have ended (completed, pruned or failed)."""
    ended = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(trial_epochs(t, 0) for t in trials if t.state in ended and not t.user_attrs.get(SURPLUS))


def epochs_committed(trials: list[FrozenTrial], max_epochs: int) -> int:
    """Epochs the trials that have started cost or may still cost: the ended ones what they trained, the
    running ones ``max_epochs``. Waiting trials are left out: the next trial a worker asks for may be one of
    them (Optuna hands out waiting trials first), and over_budget holds each to the trials numbered before it."""
    return sum(trial_epochs(t, max_epochs) for t in trials if _counted(t) and t.state != TrialState.WAITING)


def budget_is_spent(trials: list[FrozenTrial], budget: int | None, max_epochs: int) -> bool:
    """True when another run of ``max_epochs`` no longer fits in ``budget`` (None: no budget)."""
    if budget is None:
        return False
    return epochs_committed(trials, max_epochs) + max_epochs > budget


def over_budget(trials: list[FrozenTrial], number: int, budget: int | None, max_epochs: int) -> bool:
    """Whether trial ``number`` would push the study past ``budget``, counting the trials numbered before it
    at what they cost or may still cost (the rule that keeps racing workers within the budget)."""
    if budget is None:
        return False
    before = sum(trial_epochs(t, max_epochs) for t in trials if t.number < number and _counted(t))
    return before + max_epochs > budget
