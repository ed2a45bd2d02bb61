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

Where the metric has *settled* (``settled``), one epoch's value is mostly noise, and candidates and the
winner are ranked by each run's *score*: the mean of its last quarter of epochs (at least two) instead
of its final value. On digits (val_acc on 359 images, the last epochs moving a few images up and down)
that halves the error of a one-seed estimate of a config's mean final over other seeds (rms 0.0068 to
0.0047, 4 configs x 8 seeds: benchmarks/results/settled.md). Where the metric is still improving
(a language model's loss, every epoch lower) the mean of the last epochs would favour a run that got
low early over one that ends lower, and a run that overfits (its loss rising at the end) over one still
falling, so there the final value ranks, as before. Which of the two is decided by the study's own
curves, with no constant of a task (``curves_settled``): the tail mean is used when the curves are not
trending and the spread of their tail offsets (tail mean less final) is below what their own noise gives;
a trend that all share shifts every score alike and ranks nothing. What a study reports
(``Winner.values``, best.yaml, the table) stays the final values: the score only ranks.

What a study delivers is each run's final model (``best.ckpt``), so the score never overrules the end of the
runs: a candidate that ended better than another on every seed both were trained on ranks above it, whatever
their scores (``_ends_better``). On a held-out image task two candidates ended at val_loss 0.510 and 0.530
on both seeds, and the tail means named the 0.530 one. One seed is not enough to say so: there the final
value is the noise the score averages out, so the rule needs two seeds of each.

Many tasks seed themselves whatever seed they are given; then a confirmation run trains exactly what its
trial did, and seeds do not change the task's runs. Once a confirmation run has reproduced its trial (the
same value at every epoch and at the end, and the same gradient scale: ``reproduced``) and none has
differed, the study confirms no more: the runs not started go back to the search (``search_spec`` reserves
only what the started ones hold, a waiting one is failed before it trains), and every search trial's final
value is what its config gives on any seed, so the final values rank and the winner says so
(``Winner.reproduced``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace

import optuna
from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import CONFIRMS, GRADIENT_SCALE, RETRY_OF, SURPLUS, TRIAL_SEED
from stacey_lightning.study.budget import epochs_committed
from stacey_lightning.study.spec import StudySpec

__all__ = ["SEEDS_DO_NOT_MATTER", "Plan", "plan", "search_spec", "is_confirmation", "search_trials",
           "ready_to_confirm", "reproduced", "reproduction_line", "missing_run", "enqueue_run", "open_candidates",
           "is_duplicate", "tail", "curves_settled", "settled", "score", "Winner", "winner"]  # fmt: skip

SEEDS_DO_NOT_MATTER = "seeds do not change this task's runs"


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


def search_spec(spec: StudySpec, trials: Sequence[FrozenTrial] = ()) -> StudySpec:
    """``spec`` with the confirmation reserve taken out of its trials and budget: the search's limits. Once
    one of the study's ``trials`` showed that seeds do not change its runs (``reproduced``), the reserve is
    only what the confirmation runs that started hold: the others' trials and epochs go back to the search."""
    reserve = plan(spec).runs
    if not reserve:
        return spec
    epochs = reserve * spec.max_epochs
    if reproduced(trials) is not None:
        started = [t for t in trials if is_confirmation(t)]
        reserve = sum(1 for t in started if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
        epochs = epochs_committed(started, spec.max_epochs)
    budget = None if spec.budget is None else spec.budget - epochs
    return replace(spec, n_trials=spec.n_trials - reserve, budget=budget)


def is_confirmation(trial: FrozenTrial | optuna.Trial) -> bool:
    return CONFIRMS in trial.user_attrs


def search_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if not is_confirmation(t)]


def ready_to_confirm(trials: list[FrozenTrial]) -> bool:
    """True when no search trial is running: the candidates are known."""
    return not any(t.state == TrialState.RUNNING and not t.user_attrs.get(SURPLUS) for t in search_trials(trials))


def _maximize(study: optuna.Study) -> bool:
    return study.direction == optuna.study.StudyDirection.MAXIMIZE


def _maximizes(spec: StudySpec) -> bool:
    return spec.direction == "maximize"


def _complete_search(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in search_trials(trials) if t.state == TrialState.COMPLETE]


def tail(values: Sequence[float]) -> list[float]:
    """A run's last quarter of per-epoch values (at least two), or [] with fewer finite values."""
    values = [value for value in values if math.isfinite(value)]
    count = max(2, math.ceil(len(values) / 4))
    return values[-count:] if len(values) >= count else []


def curves_settled(curves: Sequence[Sequence[float]]) -> bool:
    """Whether runs' per-epoch values have settled: ranking them by their tails' means (``score``) removes more
    noise than it adds bias. Two tests on the runs' own curves, both needed:

    - No trend: fewer than half of the runs moved one way at every epoch of their last half (which noise alone
      does with probability 2 / w! over w epochs). On textlm's 5-epoch curves the second test alone took the
      tails on 3 seeds of 4, reading a curve's bend as noise (benchmarks/results/settled.md).
    - The offsets' spread: with sigma^2 the epochs' noise, a run's offset b = mean(tail) - final is its bias
      plus noise of variance sigma^2 (1 - 1/k) for a k-epoch tail. Ranking two runs by tail means instead of
      finals removes 2 sigma^2 (1 - 1/k) of their difference's variance and adds the spread of their biases
      (a bias that all share ranks nothing): settled when the sample variance of b over the runs, less its
      noise, is below that. Sigma^2 comes from within each run (the spread of its changes per epoch over its
      last half around their mean: 2 sigma^2 (n - 1/n) in sum for n changes of independent noise), so that
      runs whose tails move apart (one falling, one rising where it overfits) are not read as noise, as they
      were while every run's changes were pooled (until 2026-12-07)."""
    runs = [(values, tail(values)) for values in ([v for v in curve if math.isfinite(v)] for curve in curves)]
    runs = [(values, last) for values, last in runs if last]
    if len(runs) < 2:  # one run alone ranks nothing
        return False
    offsets = [statistics.fmean(last) - last[-1] for _, last in runs]
    squares, weight, trending = 0.0, 0.0, 0
    for values, last in runs:
        window = values[-max(len(last) + 1, math.ceil(len(values) / 2), 3) :]
        changes = [b - a for a, b in zip(window, window[1:])]
        if len(changes) >= 2:
            mean = statistics.fmean(changes)
            squares += sum((change - mean) ** 2 for change in changes)
            weight += 2 * (len(changes) - 1 / len(changes))
            trending += all(change > 0 for change in changes) or all(change < 0 for change in changes)
    if weight == 0 or 2 * trending >= len(runs):
        return False
    sigma2 = squares / weight
    k = statistics.fmean(len(last) for _, last in runs)
    return statistics.variance(offsets) < 2 * sigma2 * (1 - 1 / k)


def _curve(trial: FrozenTrial) -> list[float]:
    return [trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]


def settled(trials: list[FrozenTrial]) -> bool:
    """Whether the completed search trials' metric has settled (``curves_settled`` on their curves)."""
    return curves_settled([_curve(t) for t in _complete_search(trials)])


def score(trial: FrozenTrial, settled_metric: bool) -> float:
    """What ranks ``trial``: the mean of its tail where the metric has settled, else its final value."""
    values = tail(_curve(trial)) if settled_metric else []
    return statistics.fmean(values) if values else trial.value


def _candidates(spec: StudySpec, trials: list[FrozenTrial], count: int) -> list[FrozenTrial]:
    complete = _complete_search(trials)
    by_tail = settled(trials)
    return sorted(complete, key=lambda t: score(t, by_tail), reverse=_maximizes(spec))[:count]


def _planned_runs(spec: StudySpec, trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, int]]:
    """(candidate, seed) of every confirmation run: the top candidates now, each on the seeds after the study's;
    none once seeds are seen not to change the task's runs (``reproduced``)."""
    if reproduced(trials) is not None:
        return []
    chosen = plan(spec)
    seeds = [spec.seed + offset for offset in range(1, chosen.seeds + 1)]
    return [(candidate, seed) for candidate in _candidates(spec, trials, chosen.candidates) for seed in seeds]


def _results(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The confirmation runs that are results: finished, not failed before training, and not failed by a
    dead worker or Ctrl-C (re-queued with ``RETRY_OF``: the retry is the result)."""
    retried = {t.user_attrs[RETRY_OF] for t in trials if RETRY_OF in t.user_attrs}
    return [
        t
        for t in trials
        if is_confirmation(t) and t.state.is_finished() and not t.user_attrs.get(SURPLUS) and t.number not in retried
    ]


def _reproduces(run: FrozenTrial, candidate: FrozenTrial | None) -> bool:
    """Whether confirmation ``run`` trained exactly what ``candidate`` did: the same value at every epoch and at
    the end, and the same gradient scale (or none on either: a float another seed does not match, where a
    coarse metric such as accuracy on a small set might)."""
    return (
        candidate is not None
        and run.state == candidate.state == TrialState.COMPLETE
        and bool(candidate.intermediate_values)
        and run.intermediate_values == candidate.intermediate_values
        and run.value == candidate.value
        and run.user_attrs.get(GRADIENT_SCALE) == candidate.user_attrs.get(GRADIENT_SCALE)
    )


def reproduced(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The confirmation run that showed that seeds do not change the task's runs: the first, where every
    confirmation run that is a result reproduced its trial exactly (``_reproduces``); else None. One that
    differed, or failed, says that seeds matter."""
    results = _results(trials)
    by_number = {t.number: t for t in trials}
    if results and all(_reproduces(t, by_number.get(t.user_attrs[CONFIRMS])) for t in results):
        return results[0]
    return None


def reproduction_line(trials: Sequence[FrozenTrial], number: int) -> str | None:
    """What to say when trial ``number`` has ended, if it is the run ``reproduced`` names; else None."""
    run = reproduced(trials)
    if run is None or run.number != number:
        return None
    return (
        f"trial #{number} reproduced trial #{run.user_attrs[CONFIRMS]} exactly on seed {run.user_attrs[TRIAL_SEED]}: "
        f"{SEEDS_DO_NOT_MATTER}, so the confirmation runs not started go back to the search"
    )


def _held(trials: list[FrozenTrial]) -> set[tuple[int, int]]:
    """(candidate, seed) of the confirmation runs some trial holds, in any state: a failed run is a result
    (a diverged seed), and one whose worker died is re-queued with the same attributes (``storage.requeue``)."""
    return {
        (t.user_attrs[CONFIRMS], t.user_attrs[TRIAL_SEED])
        for t in trials
        if is_confirmation(t) and not t.user_attrs.get(SURPLUS)
    }


def missing_run(spec: StudySpec, trials: list[FrozenTrial]) -> tuple[FrozenTrial, int] | None:
    """The first confirmation run no trial holds yet, or None. Call it once the search has ended."""
    held = _held(trials)
    return next(((c, seed) for c, seed in _planned_runs(spec, trials) if (c.number, seed) not in held), None)


def enqueue_run(study: optuna.Study, candidate: FrozenTrial, seed: int) -> None:
    """Enqueue one confirmation run; the worker that does so asks for a trial at once, so that a run two
    workers both enqueued is settled there (``is_duplicate``) and none is left waiting."""
    study.enqueue_trial(candidate.params, user_attrs={CONFIRMS: candidate.number, TRIAL_SEED: seed})


def open_candidates(spec: StudySpec, trials: list[FrozenTrial]) -> set[int]:
    """The trials that may still win while any confirmation run is missing or unfinished: the top candidates
    (before the search ends, the top ones now), and the best search trial by its final value, which wins
    should a confirmation run show that seeds do not change the task's runs (``winner``). Their models are
    kept until then."""
    runs = _planned_runs(spec, trials)
    finished = {(t.user_attrs[CONFIRMS], t.user_attrs[TRIAL_SEED]) for t in _results(trials)}
    if not runs or all((c.number, seed) in finished for c, seed in runs):
        return set()
    sign = 1.0 if _maximizes(spec) else -1.0
    best_final = max(_complete_search(trials), key=lambda t: sign * t.value)
    return {candidate.number for candidate, _ in runs} | {best_final.number}


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
    scores: tuple[float, ...]  # what ranked it, per seed (``score``): the values, or their runs' tail means
    by_tail: bool  # whether the scores are tail means (the study's metric had settled)
    seeds: tuple[int | None, ...] = ()  # each value's seed: None for the study's own, else the run's TRIAL_SEED
    reproduced: bool = False  # a confirmation run reproduced its trial exactly: seeds do not change the runs
    ahead_of: tuple[int, ...] = ()  # candidates with a better score that ended worse on every seed (trials)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def score(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def confirmed(self) -> bool:
        """Whether it was trained on other seeds too (a failed or diverged run counts)."""
        return len(self.values) + self.failed > 1

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

    def ranking(self) -> str:
        """How the winner was chosen, where its values do not say it all: that seeds do not change the task's
        runs, that the scores are tail means ("ranked by its last epochs' mean, 0.9838: the metric had
        settled"), and which candidates with a better score it ended better than on every seed; else ""."""
        parts = []
        if self.reproduced:
            parts.append(f"{SEEDS_DO_NOT_MATTER}: a confirmation run reproduced its trial exactly")
        if self.by_tail:
            parts.append(f"ranked by its last epochs' mean, {self.score:.4g}: the metric had settled")
        if self.ahead_of:
            trials = ", ".join(f"#{number}" for number in self.ahead_of)
            parts.append(f"ahead of trial {trials}, which ended worse on every seed")
        return "; ".join(parts)


def _ends_better(a: Winner, b: Winner, maximize: bool) -> bool:
    """Whether ``a``'s final values beat ``b``'s on every seed: seed by seed where both ran two seeds or more
    in common, else each of ``a``'s against each of ``b``'s. Each needs two seeds: on one, the final value
    is the noise the settled rule averages out."""
    if len(a.values) < 2 or len(b.values) < 2:
        return False
    sign = 1.0 if maximize else -1.0
    of_a, of_b = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
    shared = of_a.keys() & of_b.keys()
    if len(shared) >= 2:
        return all(sign * (of_a[seed] - of_b[seed]) > 0 for seed in shared)
    return all(sign * (mine - theirs) > 0 for mine in a.values for theirs in b.values)


def _best(groups: list[Winner], maximize: bool) -> Winner:
    """The confirmed groups (all of them before any is), those without a failed run if any; among them the
    best score that no other ended better than on every seed (the best score outright in the odd cycle
    that seeds run by some and not others can make)."""
    pool = [group for group in groups if group.confirmed] or groups
    pool = [group for group in pool if not group.failed] or pool
    sign = -1.0 if maximize else 1.0
    ranked = sorted(pool, key=lambda group: sign * group.score)
    undominated = [group for group in ranked if not any(_ends_better(other, group, maximize) for other in ranked)]
    chosen = (undominated or ranked)[0]
    ahead_of = tuple(
        group.trial.number
        for group in ranked
        if sign * group.score < sign * chosen.score and _ends_better(chosen, group, maximize)
    )
    return replace(chosen, ahead_of=ahead_of)


def winner(study: optuna.Study) -> Winner | None:
    """The candidate with the best mean score over its seeds, unless another ended better on every seed
    (``_best``), or the best search trial before any confirmation finished; None when no search trial
    completed. Where seeds do not change the task's runs (``reproduced``), the best search trial by its final
    value: that is what its config gives on any seed, with nothing to average out."""
    trials = study.get_trials(deepcopy=False)
    maximize = _maximize(study)
    seeds_matter = reproduced(trials) is None
    by_tail = seeds_matter and settled(trials)
    confirmations: dict[int, list[FrozenTrial]] = {}
    for trial in _results(trials) if seeds_matter else []:
        confirmations.setdefault(trial.user_attrs[CONFIRMS], []).append(trial)
    groups = []
    for trial in search_trials(trials):
        if trial.state != TrialState.COMPLETE:
            continue
        runs = [trial] + [
            t for t in confirmations.get(trial.number, []) if t.state == TrialState.COMPLETE and math.isfinite(t.value)
        ]
        failed = len(confirmations.get(trial.number, [])) + 1 - len(runs)
        values, scores = tuple(t.value for t in runs), tuple(score(t, by_tail) for t in runs)
        seeds = tuple(t.user_attrs.get(TRIAL_SEED) for t in runs)
        groups.append(Winner(trial, values, failed, scores, by_tail, seeds=seeds, reproduced=not seeds_matter))
    return _best(groups, maximize) if groups else None
