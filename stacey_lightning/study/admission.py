"""Which trial may start: one pure function of the study's trials and its spec, the only place that decides.

A worker asks twice. Before it asks Optuna for a trial (``number=None``): DONE (the study is full, its budget
spent, its timeout passed, or its confirmation runs all held), WAIT (the search is over but its last trials
still run, so the candidates are not known yet), CONFIRM (enqueue the confirmation run ``run`` first) or ADMIT
(ask; also instead of DONE while the next trial in the queue is a spare copy of a confirmation run, to fail
before training, so that none is left WAITING: ``_done``). Then, holding trial ``number``: ADMIT (train it) or
SURPLUS (fail it before training, with the reason): a racing worker took its place, or it repeats an anchor
point or a confirmation run another worker holds. A search trial is held to the search's share of the study
(``confirm.search_spec``), a confirmation run to the whole study's. A surplus search trial's enqueued parameters
(an anchor, a retry) are queued again (``requeue``) while the search has places; a surplus confirmation run is
not: ``confirm.missing_run`` enqueues it again while it is wanted.

The rules it applies live beside it: places (``places``), epochs (``budget``), the confirmation plan and
its duplicates (``confirm``). Workers, the supervisor that replaces dead ones and ``tune``'s start point
all call this function; tests/study/test_admission.py is its table of cases.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import ANCHOR, HOSTNAME, SURPLUS
from stacey_lightning.study import confirm
from stacey_lightning.study.budget import budget_is_spent, over_budget
from stacey_lightning.study.places import is_surplus, study_is_full
from stacey_lightning.study.spec import StudySpec

__all__ = ["Verdict", "Admission", "Circumstances", "admission", "HELD_ELSEWHERE"]

HELD_ELSEWHERE = "not started: another worker holds"  # a duplicate two workers enqueued: never queued again


class Verdict(enum.Enum):
    ADMIT = "admit"
    SURPLUS = "surplus"
    WAIT = "wait"
    DONE = "done"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class Admission:
    """A verdict; ``reason`` says why (SURPLUS: the trial's fail reason; DONE: what ended the study);
    ``run`` is CONFIRM's (candidate, seed); ``requeue``: SURPLUS's enqueued parameters wait for a place;
    ``searching``: ADMIT's trial is the search's (not a confirmation run), whose parameters are open."""

    verdict: Verdict
    reason: str | None = None
    run: tuple[FrozenTrial, int] | None = None
    requeue: bool = False
    searching: bool = False


@dataclass(frozen=True)
class Circumstances:
    """What a worker knows besides the trials: seconds since the spec was built (``timeout`` counts from
    it), its host, and whether its storage has heartbeats (then a dead runner anywhere is noticed, and
    waiting for running trials is safe)."""

    elapsed: float = 0.0
    host: str = ""
    heartbeats: bool = False


def admission(
    trials: Sequence[FrozenTrial],
    spec: StudySpec,
    number: int | None = None,
    now: Circumstances = Circumstances(),
) -> Admission:
    """The verdict on asking for a trial (``number`` None) or on training trial ``number``; see the module."""
    trials = list(trials)
    search = confirm.search_spec(spec, trials)  # the search's share of the trials and the budget
    if number is not None:
        return _on_trial(trials, spec, search, trials[number])
    if spec.timeout is not None and now.elapsed >= spec.timeout:
        return Admission(Verdict.DONE, f"its timeout of {spec.timeout:g} s has passed")
    if study_is_full(trials, spec.n_trials):
        return _done(trials, spec, search, f"it has {spec.n_trials} trials")
    if budget_is_spent(trials, spec.budget, spec.max_epochs):
        return _done(trials, spec, search, f"its budget of {spec.budget} epochs is spent")
    searching = confirm.search_trials(trials)
    if not _search_over(trials, spec, search):
        return Admission(Verdict.ADMIT, searching=True)
    if not confirm.ready_to_confirm(trials):  # the candidates are known when the search ends
        if _may_wait(searching, now):
            return Admission(Verdict.WAIT, "the search's last trials still run")
        return Admission(Verdict.DONE, "the search's last trials run elsewhere: their workers confirm")
    missing = confirm.missing_run(spec, trials)
    if missing is not None:
        return Admission(Verdict.CONFIRM, run=missing)
    if any(t.state == TrialState.WAITING and confirm.is_confirmation(t) for t in trials):
        return Admission(Verdict.ADMIT)
    return _done(trials, spec, search, "its confirmation runs are all held")


def _done(trials: list[FrozenTrial], spec: StudySpec, search: StudySpec, reason: str) -> Admission:
    """DONE, unless the trial an ask takes next (the lowest-numbered WAITING one) is a confirmation run that
    would be failed before training: then ADMIT, so that a worker takes it and fails it. Two workers that
    enqueue the same run each ask once, but an ask that read the queue before the other copy landed, and
    lost its own copy to the other worker, makes a new trial instead: the study fills with that copy left
    WAITING. A waiting search trial (a killed trial's retry, an anchor) stays: a resumed study with more
    places runs it."""
    waiting = next((t for t in trials if t.state == TrialState.WAITING), None)
    if waiting is not None and confirm.is_confirmation(waiting):
        held = _on_trial(trials, spec, search, waiting)
        if held.verdict == Verdict.SURPLUS and not held.requeue:
            return Admission(Verdict.ADMIT)
    return Admission(Verdict.DONE, reason)


def _search_over(trials: list[FrozenTrial], spec: StudySpec, search: StudySpec) -> bool:
    """Whether the search has used its share (there is one only where the study confirms its candidates)."""
    searching = confirm.search_trials(trials)
    return search is not spec and (
        study_is_full(searching, search.n_trials) or budget_is_spent(searching, search.budget, spec.max_epochs)
    )


def _on_trial(trials: list[FrozenTrial], spec: StudySpec, search: StudySpec, trial: FrozenTrial) -> Admission:
    if confirm.is_confirmation(trial):
        if confirm.is_duplicate(trials, trial):
            return Admission(Verdict.SURPLUS, f"{HELD_ELSEWHERE} this confirmation run")
        if confirm.reproduced(trials) is not None:
            reason = f"not started: {confirm.SEEDS_DO_NOT_MATTER} (a confirmation run reproduced its trial)"
            return Admission(Verdict.SURPLUS, reason)
        limits, counted = spec, trials
    else:
        if _is_duplicate_anchor(trials, trial):
            return Admission(Verdict.SURPLUS, f"{HELD_ELSEWHERE} this anchor point")
        limits, counted = search, confirm.search_trials(trials)
    if is_surplus(counted, trial.number, limits.n_trials):
        reason = f"not started: the study already had {limits.n_trials} trials"
    elif over_budget(counted, trial.number, limits.budget, spec.max_epochs):
        reason = f"not started: the study's budget of {limits.budget} epochs is spent"
    else:
        return Admission(Verdict.ADMIT)
    enqueued = bool(trial.system_attrs.get("fixed_params"))
    requeue = enqueued and not confirm.is_confirmation(trial) and not _search_over(trials, spec, search)
    return Admission(Verdict.SURPLUS, reason, requeue=requeue)


def _may_wait(searching: list[FrozenTrial], now: Circumstances) -> bool:
    """Whether to wait for the search trials still running (so as to run confirmation runs too): only where a
    dead runner is noticed: by its stale heartbeat, or on this host, where a dead worker's trial is failed at
    once. Else the workers that run them confirm the candidates when they end."""
    if now.heartbeats:
        return True
    running = [t for t in searching if t.state == TrialState.RUNNING]
    return all(t.user_attrs.get(HOSTNAME) == now.host for t in running)


def _is_duplicate_anchor(trials: list[FrozenTrial], trial: FrozenTrial) -> bool:
    """Whether a lower-numbered trial already runs or ran this anchor point: two hosts that create the study
    at the same moment can both enqueue the anchors (``skip_if_exists`` sees only what is committed)."""
    name = trial.user_attrs.get(ANCHOR)
    return name is not None and any(
        t.number < trial.number
        and t.user_attrs.get(ANCHOR) == name
        and not t.user_attrs.get(SURPLUS)
        and t.state != TrialState.FAIL
        for t in trials
    )
