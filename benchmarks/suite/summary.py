"""AlgoPerf-style scores of optimizers over a split's workloads, from each optimizer's final metric per
workload (its mean over seeds).

Per workload, against the best optimizer there:

- relative gap: how far behind the best, as a fraction of the best value's size, whichever way is better:
  (best - value) / |best| for an accuracy, (value - best) / |best| for bits per character or a loss. 0 for
  the best; infinite for an optimizer with no finite result (every seed diverged, or it failed);
- within tolerance: a relative gap of at most ``TOLERANCE`` (0.5%);
- rank: 1 for the best; tied values share the mean of their places; no finite result ranks last.

Over the workloads: the fraction on which an optimizer is within tolerance, and its mean rank. A score is
taken within one split only: dev and validation numbers are never pooled.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["TOLERANCE", "Score", "relative_gap", "peer_gap", "ranks", "scores"]

TOLERANCE = 0.005


@dataclass(frozen=True)
class Score:
    """An optimizer over ``workloads`` workloads: the fraction within tolerance of the best, its mean rank."""

    within: float
    mean_rank: float
    workloads: int


def _signed(value: float, direction: str) -> float:
    """``value`` on a scale where larger is better; non-finite values (no result) are the worst."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"Invalid direction: {direction!r} (choose maximize or minimize)")
    if not math.isfinite(value):
        return -math.inf
    return value if direction == "maximize" else -value


def relative_gap(value: float, best: float, direction: str) -> float:
    """How far ``value`` is behind ``best``, as a fraction of ``|best|`` (>= 0 when ``best`` is the best)."""
    if not (math.isfinite(value) and math.isfinite(best)):
        return math.inf
    behind = _signed(best, direction) - _signed(value, direction)
    if best == 0:
        return 0.0 if behind == 0 else math.inf
    return behind / abs(best)


def _best(values: Mapping[str, float], direction: str) -> float:
    finite = [value for value in values.values() if math.isfinite(value)]
    if not finite:
        return math.nan
    return max(finite) if direction == "maximize" else min(finite)


def peer_gap(values: Mapping[str, float], name: str, direction: str) -> float:
    """``name``'s relative difference to the best of the other optimizers: positive when it beats every one
    of them (by that fraction of the peer's value), negative when behind; NaN without a finite peer or a
    finite value of its own."""
    peer = _best({other: value for other, value in values.items() if other != name}, direction)
    if not (math.isfinite(peer) and math.isfinite(values[name])):
        return math.nan
    return -relative_gap(values[name], peer, direction)


def ranks(values: Mapping[str, float], direction: str) -> dict[str, float]:
    """Each optimizer's place among ``values`` (1 = best); ties share the mean of their places."""
    keys = {name: -_signed(value, direction) for name, value in values.items()}  # smaller is better
    ordered = sorted(keys.values())
    return {name: ordered.index(key) + 1 + (ordered.count(key) - 1) / 2 for name, key in keys.items()}


def scores(
    table: Mapping[str, Mapping[str, float]],
    directions: Mapping[str, str],
    optimizers: Sequence[str],
    tolerance: float = TOLERANCE,
) -> dict[str, Score]:
    """Each of ``optimizers``' score over the workloads of ``table`` (workload -> optimizer -> final metric,
    in the direction ``directions[workload]``). An optimizer missing from a workload's row counts as having
    no result there."""
    within: dict[str, list[bool]] = {name: [] for name in optimizers}
    places: dict[str, list[float]] = {name: [] for name in optimizers}
    for workload, row in table.items():
        values = {name: row.get(name, math.nan) for name in optimizers}
        best = _best(values, directions[workload])
        for name, place in ranks(values, directions[workload]).items():
            within[name].append(relative_gap(values[name], best, directions[workload]) <= tolerance)
            places[name].append(place)
    return {
        name: Score(
            within=statistics.fmean(within[name]) if within[name] else math.nan,
            mean_rank=statistics.fmean(places[name]) if places[name] else math.nan,
            workloads=len(places[name]),
        )
        for name in optimizers
    }
