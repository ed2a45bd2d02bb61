"""What ``compare`` writes: curves read back from the runs' TensorBoard events, the figure (a matplotlib
Figure that pyplot does not hold, so a user's session and backend are left alone), the tables."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from stacey_lightning.compare.results import Comparison

from stacey_lightning.compare.results import summarize

__all__ = ["Curves", "read_curves", "plot", "write_tables"]

# Tags the tasks log the per-step training loss under: "train_loss" when logged on_step only,
# "train_loss_step" when logged both per step and per epoch.
_LOSS_TAGS = ("train_loss", "train_loss_step")


@dataclass
class Curves:
    """One run's curves, read back from its TensorBoard events, with elapsed seconds at each point."""

    loss_steps: np.ndarray
    loss: np.ndarray
    metric_steps: np.ndarray
    metric: np.ndarray
    loss_seconds: np.ndarray
    metric_seconds: np.ndarray


def read_curves(run_dir: str, clock_steps: np.ndarray, clock_elapsed: np.ndarray, monitor: str) -> Curves:
    """One run's loss and ``monitor`` curves, with the elapsed training seconds (``StepClock``) at each point."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(run_dir, size_guidance={SCALARS: 0})  # 0: keep every point
    events.Reload()
    tags = events.Tags()["scalars"]
    loss_tag = next((tag for tag in _LOSS_TAGS if tag in tags), None)
    if loss_tag is None:
        raise ValueError(
            f"run {run_dir!r} has no per-step training loss ({' or '.join(_LOSS_TAGS)}); "
            f"its scalars: {', '.join(sorted(tags))}. The task must self.log('train_loss', ...)"
        )

    def series(tag: str) -> tuple[np.ndarray, np.ndarray]:
        points = events.Scalars(tag)
        return np.array([point.step for point in points]), np.array([point.value for point in points])

    loss_steps, loss = series(loss_tag)
    metric_steps, metric = series(monitor)

    # Interpolation: with gradient accumulation several batches share one step.
    def seconds(steps: np.ndarray) -> np.ndarray:
        return np.interp(steps, clock_steps, clock_elapsed) if clock_steps.size else steps * 0.0

    return Curves(
        loss_steps=loss_steps,
        loss=loss,
        metric_steps=metric_steps,
        metric=metric,
        loss_seconds=seconds(loss_steps),
        metric_seconds=seconds(metric_steps),
    )


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (fewer at the start): per-batch losses are too noisy to read."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _aligned(steps: list[np.ndarray], values: list[np.ndarray], seconds: list[np.ndarray]):
    """Mean and std over seeds at the steps every seed has, with the mean elapsed seconds there."""
    common = steps[0]
    for other in steps[1:]:
        common = np.intersect1d(common, other)

    def stack(series: list[np.ndarray]) -> np.ndarray:
        return np.stack([value[np.searchsorted(step, common)] for step, value in zip(steps, series)])

    stacked = stack(values)
    return common, stack(seconds).mean(axis=0), stacked.mean(axis=0), stacked.std(axis=0)


def plot(curves: dict[str, list[Curves]], monitor: str, *, axes: Any = None) -> Any:
    """The comparison's figure: per optimizer, the mean ± one standard deviation across seeds of the training
    loss (top row) and ``monitor`` (bottom row), against step (left) and training wall-clock time (right).

    Args:
        curves: per optimizer name, one ``Curves`` per seed.
        monitor: the metric's name, for the titles.
        axes: a 2 x 2 array of matplotlib Axes to draw into; None draws into a new
            ``matplotlib.figure.Figure``, which no pyplot state holds (no window opens, the backend is left
            as it is).

    Returns:
        The Figure drawn into: ``.savefig(path)`` writes it.
    """
    import matplotlib
    from matplotlib.figure import Figure

    created = axes is None
    if created:
        axes = Figure(figsize=(10, 7)).subplots(2, 2, squeeze=False)
    longest = max(run.loss.size for runs in curves.values() for run in runs)
    window = max(1, longest // 50)
    colors = matplotlib.colormaps["tab10"]
    for index, (name, runs) in enumerate(curves.items()):
        color = colors(index % 10)
        rows = (
            (
                [run.loss_steps for run in runs],
                [_moving_average(run.loss, window) for run in runs],
                [run.loss_seconds for run in runs],
            ),
            ([run.metric_steps for run in runs], [run.metric for run in runs], [run.metric_seconds for run in runs]),
        )
        for row, (steps, values, seconds) in enumerate(rows):
            common, mean_seconds, mean, std = _aligned(steps, values, seconds)
            marker = "o" if common.size < 30 else None  # per-epoch metrics are few points: show them
            for column, x in enumerate((common, mean_seconds)):
                axis = axes[row][column]
                axis.plot(x, mean, color=color, marker=marker, markersize=3, label=f"{name} ({len(runs)} seeds)")
                axis.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    loss_title = "training loss" + (f" (moving average over {window} steps)" if window > 1 else "")
    for column, x_label in enumerate(("step", "training wall-clock time (s)")):
        axes[0][column].set_title(loss_title, fontsize=10)
        axes[1][column].set_title(monitor, fontsize=10)
        for row in range(2):
            axes[row][column].set_xlabel(x_label)
            axes[row][column].grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure = axes[0][0].figure
    if created:
        figure.suptitle("mean ± one standard deviation across seeds", fontsize=10)
        figure.tight_layout()
    return figure


def write_tables(comparison: Comparison, optimizers: Sequence[str]) -> None:
    """The comparison's compare.md (mean ± std per optimizer, time per step, memory, and for tuned
    optimizers the tuning budget spent and the best tuning trial), compare.csv and runs.csv, at the
    paths it names, one row per optimizer in the order of ``optimizers``."""
    runs, monitor, tuned = comparison.runs, comparison.monitor, comparison.tuned
    markdown, table_csv, runs_csv = comparison.markdown, comparison.csv, comparison.runs_csv
    on_cuda = any(run.peak_cuda_bytes is not None for run in runs)
    mib = 2.0**20
    rows, summaries = [], {}
    for name in optimizers:
        mine = [run for run in runs if run.optimizer == name]
        finals = summaries[name] = summarize([run.final_metric for run in mine])
        rows.append(
            {
                "optimizer": name,
                "seeds": len(mine),
                # Over the runs that did not diverge; sample std, left empty for one run (not a misleading 0).
                f"final_{monitor}_mean": finals.mean,
                f"final_{monitor}_std": finals.std,
                "diverged": finals.diverged,
                "seconds_per_step": statistics.fmean(run.seconds_per_step for run in mine),
                "optimizer_state_bytes": max(run.optimizer_state_bytes for run in mine),
                "peak_cuda_bytes": max((run.peak_cuda_bytes or 0 for run in mine), default=0) if on_cuda else None,
                "options": json.dumps(mine[0].options),
            }
        )
        if name in tuned:
            result = tuned[name]
            rows[-1].update(
                {
                    "tuning_complete": result.complete,
                    "tuning_pruned": result.pruned,
                    "tuning_failed": result.failed,
                    "tuning_epochs": result.epochs,
                    f"best_tuning_{monitor}": result.best_value,
                }
            )
    _write_csv(table_csv, rows)
    _write_csv(
        runs_csv,
        [
            {
                "optimizer": run.optimizer,
                "seed": run.seed,
                f"final_{monitor}": run.final_metric,
                "seconds_per_step": run.seconds_per_step,
                "optimizer_state_bytes": run.optimizer_state_bytes,
                "peak_cuda_bytes": run.peak_cuda_bytes,
                "run_dir": run.run_dir,
            }
            for run in runs
        ],
    )

    header = ["optimizer", "seeds", f"final {monitor} (mean ± std)", "time per step (ms)", "optimizer state (MiB)"]
    if on_cuda:
        header.append("peak CUDA memory (MiB)")
    if tuned:
        header += ["tuning trials (complete / pruned / failed)", "tuning epochs", f"best tuning {monitor}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["optimizer"],
            str(row["seeds"]),
            summaries[row["optimizer"]].text(),
            f"{row['seconds_per_step'] * 1e3:.3g}",
            f"{row['optimizer_state_bytes'] / mib:.3g}",
        ]
        if on_cuda:
            cells.append(f"{row['peak_cuda_bytes'] / mib:.4g}")
        if tuned:
            cells += (
                [
                    f"{row['tuning_complete']} / {row['tuning_pruned']} / {row['tuning_failed']}",
                    str(row["tuning_epochs"]),
                    f"{row[f'best_tuning_{monitor}']:.4f}",
                ]
                if row["optimizer"] in tuned
                else ["", "", ""]
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Time per step: median over the steps after the first (forward, backward and optimizer step; "
        "no data loading or validation), averaged over seeds.",
        "Optimizer state: bytes of tensors in the optimizer's state after training."
        + (
            " Peak CUDA memory: torch.cuda.max_memory_allocated over the run."
            if on_cuda
            else " Runs were on CPU, where no peak-memory counter isolates one run; the state size is what differs "
            "between optimizers."
        ),
        *(
            [
                "Tuning: every optimizer had the same trials, sampler, pruner and epochs per trial; tuning epochs "
                "are the epochs trained over all its trials (pruned ones stop early). Its study is kept: "
                + ", ".join(f"{name} in study {result.study_name!r}" for name, result in tuned.items())
                + "."
            ]
            if tuned
            else []
        ),
        "",
        "Options" + (" (each optimizer's best tuning trial)" if tuned else "") + ":",
        "",
    ]
    lines += [f"- {row['optimizer']}: `{row['options']}`" for row in rows]
    with open(markdown, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def _write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
