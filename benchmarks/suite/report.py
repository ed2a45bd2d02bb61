"""The Markdown body of ``benchmarks/results/suite.md``: per split and budget, the AlgoPerf-style summary
(``summary``), then every workload's table: each optimizer's final metric over its seeds, its gap to the best
optimizer there and to its best tuned peer, how it was tuned and the configuration it was retrained at."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from benchmarks.suite.registry import DEV, VALIDATION, Workload
from benchmarks.suite.run import FINDER, Outcome
from benchmarks.suite.summary import TOLERANCE, peer_gap, relative_gap, scores
from stacey_lightning.compare.results import summarize

__all__ = ["render", "final_means"]

_SPLIT_TITLES = {
    DEV: "dev: the workloads that defaults are chosen on",
    VALIDATION: "validation: reported, never used to choose a default",
}
# Numbers worth showing in a config: Stacey's hyperparameters and a baseline's options (not eps, flags or
# the schedule, which the studies do not tune).
_SKIPPED_KEYS = {"eps", "tau_follows_lr", "foreach", "fused", "maximize"}


def final_means(outcomes: Mapping[str, Outcome]) -> dict[str, float]:
    """Each optimizer's mean final metric over its seeds that ended finite; NaN for no result."""
    return {name: summarize(outcome.finals).mean if outcome.finals else math.nan for name, outcome in outcomes.items()}


def render(
    measured: Mapping[str, Mapping[int, Mapping[str, Outcome]]],
    workloads: Sequence[Workload],
    optimizers: Sequence[str],
    budgets: Sequence[int],
    seeds: int,
) -> str:
    """``measured[workload][budget][optimizer]`` as Markdown, one section per split."""
    lines: list[str] = []
    for split in (DEV, VALIDATION):
        chosen = [workload for workload in workloads if workload.split == split and workload.name in measured]
        if not chosen:
            continue
        lines += [f"## {_SPLIT_TITLES[split]}", ""]
        for budget in budgets:
            lines += _summary(chosen, measured, optimizers, budget)
        for workload in chosen:
            for budget in budgets:
                lines += _workload_table(workload, measured[workload.name][budget], optimizers, budget, seeds)
    return "\n".join(lines + _how())


def _summary(
    workloads: Sequence[Workload], measured: Mapping[str, Any], optimizers: Sequence[str], budget: int
) -> list[str]:
    table = {workload.name: final_means(measured[workload.name][budget]) for workload in workloads}
    directions = {workload.name: workload.direction for workload in workloads}
    ranked = sorted(scores(table, directions, optimizers).items(), key=lambda item: item[1].mean_rank)
    lines = [
        f"### Summary at K = {budget} runs per optimizer, {len(workloads)} workload{'s' * (len(workloads) > 1)}",
        "",
        f"| optimizer | workloads within {TOLERANCE:.1%} of the best | mean rank (1 = best) |",
        "|---|---|---|",
    ]
    for name, score in ranked:
        count = round(score.within * score.workloads)
        lines.append(f"| {name} | {score.within:.2f} ({count} of {score.workloads}) | {score.mean_rank:.2f} |")
    return [*lines, ""]


def _workload_table(
    workload: Workload, outcomes: Mapping[str, Outcome], optimizers: Sequence[str], budget: int, seeds: int
) -> list[str]:
    better = "higher" if workload.direction == "maximize" else "lower"
    means = final_means(outcomes)
    finite = [value for value in means.values() if math.isfinite(value)]
    best = (max if workload.direction == "maximize" else min)(finite) if finite else math.nan
    lines = [
        f"### {workload.name} ({workload.architecture}), K = {budget}: {workload.monitor}, {better} is better",
        "",
        f"| optimizer | final {workload.monitor} (mean ± std, {seeds} seed{'s' * (seeds > 1)}) | behind the best | "
        "against the best peer | tuning | retrained at |",
        "|---|---|---|---|---|---|",
    ]
    for name in optimizers:
        outcome = outcomes[name]
        if outcome.error is not None:
            lines.append(f"| {name} | failed: {outcome.error} | | | | |")
            continue
        gap = relative_gap(means[name], best, workload.direction)
        peer = peer_gap(means, name, workload.direction)
        lines.append(
            f"| {name} | {summarize(outcome.finals).text()} | {_percent(gap)} | {_percent(peer, signed=True)} | "
            f"{outcome.tuning} | {_config_text(outcome.config)} |"
        )
    return [*lines, ""]


def _percent(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "no result"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _config_text(config: Mapping[str, Any]) -> str:
    return ", ".join(_config_parts(config, prefix="")) or "defaults"


def _config_parts(config: Mapping[str, Any], prefix: str) -> Iterator[str]:
    """ "key value" for every number or name in ``config``, nested keys as "kind.key"."""
    for key, value in config.items():
        if key in _SKIPPED_KEYS or value is None or isinstance(value, bool):
            continue
        if isinstance(value, Mapping) and key != "schedule":
            yield from _config_parts(value, prefix=f"{prefix}{key}.")
        elif isinstance(value, float):
            yield f"{prefix}{key} {value:.3g}"
        elif isinstance(value, (int, str)):
            yield f"{prefix}{key} {value}"
        elif isinstance(value, (list, tuple)):  # betas
            yield f"{prefix}{key} {'/'.join(f'{item:.3g}' for item in value)}"


def _how() -> list[str]:
    return [
        "## How it was measured",
        "",
        "Per workload, budget K and optimizer, `stacey_lightning.compare.compare(..., budget=K * epochs)` "
        "(= `stacey-compare --tune-budget`): Stacey tuned on the workload's search-space preset, each baseline "
        "on its `baselines` preset entry, every study with the same sampler (TPE), pruner (Hyperband), epochs per "
        "trial and study seed, confirming its top candidates on other seeds within its budget; then the winner "
        "retrained on seeds 0.. (the same initial weights and batch order per seed for every optimizer). "
        f"`{FINDER}` is the geometry finder (`stacey-find`, its own budget of 1.5 runs at every K), its pick "
        "retrained on the same seeds. Every optimizer is built by the workload module's `StaceyMixin` from the "
        "same parameter groups by kind (no weight decay on vectors). Behind the best: the relative gap of the "
        f"mean to the best mean on the workload; the summary counts a workload as solved within {TOLERANCE:.1%}. "
        "Against the best peer: the relative difference to the best other optimizer (positive: ahead of all). "
        "Tuning: trials complete / pruned / failed and epochs trained in the study, or the finder's steps.",
    ]
