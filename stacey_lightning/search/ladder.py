"""Climbing the winner's ladder: after the anchors, the best geometry's step, a factor ``RUNG`` at a time.

A study's anchors try every geometry at its middle step (``search.anchors``). Which step a geometry wants
is the model's: on the development half's sequence models the Muon-like point was best at 1e-3 on one,
3e-3 on another and 9e-3 on a third (benchmarks/results/suite.md), and tuned Muon's lr on textlm was a TPE
draw beyond its own ladder. A fixed ladder of three rungs misses both ends; the sampler, with the few
trials a budget of 4 to 8 runs leaves it, seldom reaches them. So when the best finished trial is a rung,
the next trial is its ladder's next rung: a step up while going up has paid, then one down, until both
neighbours of the best rung are known to be worse (pruned or failed counts as worse). A Muon-like ladder
has a second coordinate, the step of the rest of the model (embeddings, head, vectors), from the
matrices' step up to ten times it, where the space lets the matrices step apart (their ``step_scale``):
Muon's AdamW moves the rest by up to five times its matrices' update RMS; and a third, the embeddings'
step times the rest's, where the space lets the embeddings step apart (the language preset: 1 to 10;
three times was better on the development transformer, worse on its GRU), unless the model's trials
found no embeddings. The search alternates: the coordinates the best rung has not moved yet first, then those
it has. Once the steps' lines are done, a geometry at tau = 0 is tried with Stacey's pull towards z (a horizon
of one run; if that wins, the steps' lines there, then a third of a run), where the space samples the horizon:
the coupling helped the development half's autoencoder and convolutional models and hurt its sequence models
(spectral_coupling.md), so it is a line to search per model, after the steps, which moved more between models.
Then the sampler goes on. Line searches on the coordinates that moved most between models, around the geometry
that won.

``next_rung`` is a pure function of the search's trials (confirmation runs left out by the caller): a
resumed study, or another worker, computes the same next rung. While any rung still runs or waits, the
winner is not known yet and it proposes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import LADDER, MODEL_KINDS, RUNG_COORDINATES, SURPLUS
from stacey_lightning.search.anchors import RUNG, Anchor, Ladder, coupling_bounds, embedding_bounds, rest_bounds

__all__ = ["next_rung", "step_bounds"]

# A rung clipped into the space this close to the rung it comes from repeats it.
_LEAST_RATIO = 1.5


def next_rung(trials: Sequence[FrozenTrial], ladders: Sequence[Ladder], space: Any, minimize: bool) -> Anchor | None:
    """The next rung to train, or None: the best complete trial is no rung, a rung is still to finish, or
    the best rung's neighbours are all tried (or outside ``space``'s ranges)."""
    trials = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    rungs = [t for t in trials if t.user_attrs.get(LADDER) is not None]
    if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in rungs):
        return None
    complete = [t for t in trials if t.state == TrialState.COMPLETE and _finite(t.value)]
    if not complete:
        return None
    best = (min if minimize else max)(complete, key=lambda t: t.value)
    ladder = next((ladder for ladder in ladders if ladder.name == best.user_attrs.get(LADDER)), None)
    bounds = step_bounds(space)
    if ladder is None or bounds is None:
        return None
    here = _coordinates(best)
    tried = [_coordinates(t) for t in rungs if t.user_attrs[LADDER] == ladder.name]
    params = space.params_for(ladder.rung(*here).values)
    for neighbour in _neighbours(ladder, here, bounds, space, _model_kinds(trials)):
        if any(all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(neighbour, t)) for t in tried):
            continue
        rung = ladder.rung(*neighbour)
        # A space that samples lr itself, not a coordinate step, leaves the SGD-like point's lr in its middle.
        if space.params_for(rung.values) != params:
            return rung
    return None


def _neighbours(
    ladder: Ladder, here: tuple[float, ...], bounds: tuple[float, float], space: Any, kinds: set[str] | None
) -> list:
    """The rungs next to ``here`` = (step, rest, embedding, coupling), in the order they are tried: along each
    coordinate the ladder moves along, up then down; the coordinates the best rung has not moved from their
    start first (step, rest, embeddings), then those it has, then the coupling's. Alternating so reaches a
    corner two rungs away from the start in two rungs, where one line search after the other spends the
    first's last rungs before it (on textlm a study of 8 runs has two rungs after its anchors: the step's x3,
    then the rest's x3 is 0.095 better; spectral_coupling.md)."""
    step, rest, embedding, coupling = here
    low, high = bounds
    steps = [
        (s, rest, embedding, coupling) for s in (min(step * RUNG, high), max(step / RUNG, low))
        if max(s, step) / min(s, step) >= _LEAST_RATIO and low <= s * rest <= high
    ]  # fmt: skip
    spectral = rest_bounds(space) if ladder.rest else None
    # The rest's step is step * rest (within the space's steps) and the spectral kinds' scale 1 / rest.
    rests = [] if spectral is None else [
        (step, r, embedding, coupling) for r in (rest * RUNG, rest / RUNG)
        if _within(1 / r, spectral) and low <= step * r <= high
    ]  # fmt: skip
    # A model without embeddings (as its trials found it) would train the same rung again.
    scale = embedding_bounds(space) if ladder.embedding and (kinds is None or "embedding" in kinds) else None
    embeddings = [] if scale is None else [
        (step, rest, e, coupling) for e in (embedding * RUNG, embedding / RUNG) if _within(e, scale)
    ]  # fmt: skip
    rates = coupling_bounds(space) if ladder.coupling else None
    couplings = [] if rates is None else [
        (step, rest, embedding, c) for c in _coupling_neighbours(coupling) if _within(c, rates)
    ]  # fmt: skip
    moved = (not math.isclose(step, ladder.middle, rel_tol=1e-6), rest != 1.0, embedding != 1.0)
    lines = sorted(zip(moved, (steps, rests, embeddings)), key=lambda line: line[0])  # stable: unmoved first
    # The coupling's line last, once the steps' are done: the step moved most between models.
    return [rung for _, line in lines for rung in line] + couplings


def _coupling_neighbours(coupling: float) -> list[float]:
    """The pulls towards z per run next to ``coupling``, more first: from none (tau = 0), one per run (a horizon
    of one run); from there RUNG times more, or RUNG times less, where less than one per run is none again."""
    if coupling == 0.0:
        return [1.0]
    less = coupling / RUNG
    return [coupling * RUNG, less if less >= 1.0 - 1e-9 else 0.0]


def _within(value: float, bounds: tuple[float, float]) -> bool:
    """Whether ``value`` is in ``bounds``, up to rounding (1 / 3 * 3 is not quite 1)."""
    return bounds[0] * (1 - 1e-9) <= value <= bounds[1] * (1 + 1e-9)


def _model_kinds(trials: Sequence[FrozenTrial]) -> set[str] | None:
    """The kinds of parameter the model has, as a finished trial recorded them; None before any did."""
    recorded = next((t.user_attrs[MODEL_KINDS] for t in trials if MODEL_KINDS in t.user_attrs), None)
    return None if recorded is None else set(recorded)


def _coordinates(trial: FrozenTrial) -> tuple[float, ...]:
    """(step, rest, embedding, coupling) as ``trial`` recorded them; a rung of a study from before a coordinate
    existed (the coupling's, round 13) is where that coordinate starts."""
    attrs = trial.user_attrs
    return tuple(
        float(attrs[name] if start is None else attrs.get(name, start)) for name, start in RUNG_COORDINATES.items()
    )


def step_bounds(space: Any) -> tuple[float, float] | None:
    """The range of steps ``space`` samples (its lr's, as a coordinate step or an lr), or None if it samples
    no lr on a range: then a ladder has nowhere to go."""
    distribution = getattr(space, "distributions", {}).get("lr")
    if distribution is None or distribution.kind not in ("coordinate_step", "log_uniform", "uniform"):
        return None
    return float(distribution.low), float(distribution.high)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
