"""Winners that hold: before a study names its best, it trains its top candidates again on other seeds,
within its budget, and names the candidate with the best mean, so that one lucky seed is not picked.

On a noisy metric the best single trial of a study is often a fluke (benchmarks/results/digits_seeds.md:
on digits a one-image difference decides it). So a study keeps a reserve of its trials (and epochs)
for *confirmation runs*: once the search has used the rest, the top ``candidates`` completed search
trials are trained again, unpruned, with the same configuration on seeds ``seed + 1, ..., seed + seeds``
(``plan``). The reserve is small against the search (2 of 6 to 6 of 40 and more runs) and there is none
below six planned runs, where the search itself is all there is.

Confirmation runs are ordinary trials in the storage (enqueued with ``CONFIRMS``, the number of the
trial they repeat, and ``TRIAL_SEED``), so every worker, host and DDP rank runs them as it runs any
trial, they count towards ``n_trials`` and the budget, and a killed study resumes them. A worker
whose search has ended enqueues the first run no trial holds yet (``missing_run``) and asks for a
trial at once. Optuna has no way to enqueue a trial only once across processes (``skip_if_exists``
compares parameters, which a confirmation shares with the trial it repeats), so when two workers
enqueue the same run, the lower-numbered copy trains and the other is failed before training
(``is_duplicate``); none is left waiting.

``winner`` is the one place that says which trial a study ends with: the candidate with the best mean
over its seeds (a candidate whose confirmation failed or diverged ranks after those without), or, before
any confirmation finished, the best search trial.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.tuner.attributes import CONFIRMS, RETRY_OF, SURPLUS, TRIAL_SEED
from stacey_lightning.tuner.spec import StudySpec

__all__ = ["Plan", "plan", "search_spec", "is_confirmation", "search_trials", "ready_to_confirm", "missing_run",
           "enqueue_run", "open_candidates", "is_duplicate", "Winner", "winner"]  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """``candidates`` top trials, each trained again on ``seeds`` more seeds."""

    candidates: int
    seeds: int

    @property
    def runs(self) -> int:
        return self.candidates * self.seeds


def plan(spec: StudySpec) -> Plan:
    """The confirmation runs a study of ``spec.planned_trials`` full runs reserves: none below 6 (or when
    ``spec.confirm`` is off), 2 candidates on 1 more seed below 16, 2 on 2 below 40, else 3 on 2."""
    planned = spec.planned_trials
    if not spec.confirm or planned < 6:
        return Plan(0, 0)
    if planned < 16:
        return Plan(2, 1)
    return Plan(2, 2) if planned < 40 else Plan(3, 2)


def search_spec(spec: StudySpec) -> StudySpec:
    """``spec`` with the confirmation reserve taken out of its trials and budget: the search's limits."""
    reserve = plan(spec).runs
    if not reserve:
        return spec
    budget = None if spec.budget is None else spec.budget - reserve * spec.max_epochs
    return replace(spec, n_trials=spec.n_trials - reserve, budget=budget)


def is_confirmation(trial: FrozenTrial | optuna.Trial) -> bool:
    return CONFIRMS in trial.user_attrs


def search_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if not is_confirmation(t)]


def ready_to_confirm(trials: list[FrozenTrial]) -> bool:
    """True when no search trial is running: the candidates are known."""
    return not any(t.state == TrialState.RUNNING and not t.user_attrs.get(SURPLUS) for t in search_trials(trials))


def _candidates(study: optuna.Study, trials: list[FrozenTrial], count: int) -> list[FrozenTrial]:
    complete = [t for t in search_trials(trials) if t.state == TrialState.COMPLETE]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.value, reverse=maximize)[:count]


def _planned_runs(study: optuna.Study, spec: StudySpec, trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, int]]:
    """(candidate, seed) of every confirmation run: the top candidates now, each on the seeds after the study's."""
    chosen = plan(spec)
    seeds = [spec.seed + offset for offset in range(1, chosen.seeds + 1)]
    return [(candidate, seed) for candidate in _candidates(study, trials, chosen.candidates) for seed in seeds]


def _results(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The confirmation runs that are results: finished, not failed before training, and not failed by a
    dead worker or Ctrl-C (re-queued with ``RETRY_OF``: the retry is the result)."""
    retried = {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}
    return [
        t
        for t in trials
        if is_confirmation(t) and t.state.is_finished() and not t.user_attrs.get(SURPLUS) and t.number not in retried
    ]


def _held(trials: list[FrozenTrial]) -> set[tuple[int, int]]:
    """(candidate, seed) of the confirmation runs some trial holds, in any state: a failed run is a result
    (a diverged seed), and one whose worker died is re-queued with the same attributes (``storage.requeue``)."""
    return {
        (t.user_attrs[CONFIRMS], t.user_attrs[TRIAL_SEED])
        for t in trials
        if is_confirmation(t) and not t.user_attrs.get(SURPLUS)
    }


def missing_run(study: optuna.Study, spec: StudySpec, trials: list[FrozenTrial]) -> tuple[FrozenTrial, int] | None:
    """The first confirmation run no trial holds yet, or None. Call it once the search has ended."""
    held = _held(trials)
    return next(((c, seed) for c, seed in _planned_runs(study, spec, trials) if (c.number, seed) not in held), None)


def enqueue_run(study: optuna.Study, candidate: FrozenTrial, seed: int) -> None:
    """Enqueue one confirmation run; the worker that does so asks for a trial at once, so that a run two
    workers both enqueued is settled there (``is_duplicate``) and none is left waiting."""
    study.enqueue_trial(candidate.params, user_attrs={CONFIRMS: candidate.number, TRIAL_SEED: seed})


def open_candidates(study: optuna.Study, spec: StudySpec, trials: list[FrozenTrial]) -> set[int]:
    """The candidates that may still win: the top ones while any of their confirmation runs is missing or
    unfinished (before the search ends, the top ones now). Their models are kept until then."""
    runs = _planned_runs(study, spec, trials)
    finished = {(t.user_attrs[CONFIRMS], t.user_attrs[TRIAL_SEED]) for t in _results(trials)}
    if runs and all((c.number, seed) in finished for c, seed in runs):
        return set()
    return {candidate.number for candidate, _ in runs}


def is_duplicate(trials: list[FrozenTrial], trial: FrozenTrial) -> bool:
    """Whether a lower-numbered trial already holds this confirmation run (two workers enqueued it)."""
    key = (trial.user_attrs.get(CONFIRMS), trial.user_attrs.get(TRIAL_SEED))
    return any(
        t.number < trial.number
        and (t.user_attrs.get(CONFIRMS), t.user_attrs.get(TRIAL_SEED)) == key
        and not t.user_attrs.get(SURPLUS)
        and t.state != TrialState.FAIL
        for t in trials
    )


@dataclass(frozen=True)
class Winner:
    """The trial a study ends with, and its metric over the seeds it was trained on (the study's first)."""

    trial: FrozenTrial
    values: tuple[float, ...]
    failed: int  # confirmation runs that failed or diverged

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def text(self, digits: int = 4) -> str:
        """ "0.9805 ± 0.0021 over 3 seeds", or the one value."""
        if len(self.values) == 1 and not self.failed:
            return f"{self.mean:.{digits}g}"
        shown = f"{self.mean:.{digits}g}" + (f" ± {self.std:.2g}" if self.std is not None else "")
        seeds = len(self.values) + self.failed
        return shown + f" over {seeds} seeds" + (f" ({self.failed} failed)" if self.failed else "")


def winner(study: optuna.Study) -> Winner | None:
    """The candidate with the best mean over its seeds, or the best search trial before any confirmation
    finished; None when no search trial completed."""
    trials = study.get_trials(deepcopy=False)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    confirmations: dict[int, list[FrozenTrial]] = {}
    for trial in _results(trials):
        confirmations.setdefault(trial.user_attrs[CONFIRMS], []).append(trial)
    groups = []
    for trial in search_trials(trials):
        if trial.state != TrialState.COMPLETE:
            continue
        runs = confirmations.get(trial.number, [])
        values = [trial.value] + [t.value for t in runs if t.state == TrialState.COMPLETE and math.isfinite(t.value)]
        groups.append(Winner(trial, tuple(values), failed=len(runs) + 1 - len(values)))
    if not groups:
        return None
    confirmed = [group for group in groups if len(group.values) + group.failed > 1]
    pool = confirmed or groups
    sign = -1.0 if maximize else 1.0
    return min(pool, key=lambda group: (group.failed > 0, sign * group.mean))
