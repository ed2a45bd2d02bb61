"""What a comparison produces: runs, each optimizer's tuning, and the whole; shared by its modules."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RunResult", "Tuned", "Comparison", "Finals", "summarize"]


@dataclass
class Tuned:
    """One optimizer's study: its best config, the task parameters of that trial, and the budget spent."""

    optimizer: str
    study_name: str
    options: dict[str, Any]
    task_params: dict[str, Any]
    best_value: float  # the winner's mean over the seeds its study confirmed it on (study.confirm)
    complete: int
    pruned: int
    failed: int
    epochs: int  # epochs trained over all trials (budget.epochs_spent)


@dataclass
class RunResult:
    """One training run: an optimizer with one seed."""

    optimizer: str
    seed: int
    run_dir: str
    final_metric: float
    seconds_per_step: float
    optimizer_state_bytes: int
    peak_cuda_bytes: int | None  # None when the run was not on CUDA
    options: dict[str, Any]  # what the optimizer was built with (Stacey: the resolved config)
    clock_steps: np.ndarray = field(repr=False)
    clock_elapsed: np.ndarray = field(repr=False)


@dataclass
class Comparison:
    """What ``compare`` produced: every run, the files written, and each optimizer's tuning (if tuned)."""

    monitor: str
    runs: list[RunResult]
    figure: str
    markdown: str
    csv: str
    runs_csv: str
    tuned: dict[str, Tuned] = field(default_factory=dict)


@dataclass
class Finals:
    """An optimizer's final metric over its seeds: mean and sample std of the runs that ended finite, and how
    many diverged (a NaN or infinite final metric). std is None for fewer than two finite runs."""

    mean: float  # NaN when every run diverged
    std: float | None
    diverged: int
    seeds: int

    def text(self) -> str:
        """ "2.8524 ± 0.0454", with "(1 of 3 seeds diverged)" where any did."""
        shown = f"{self.mean:.4f}" + (f" ± {self.std:.4f}" if self.std is not None else "")
        return shown + (f" ({self.diverged} of {self.seeds} seeds diverged)" if self.diverged else "")


def summarize(finals: Sequence[float]) -> Finals:
    """Mean ± std of the finite values among ``finals``, counting the others as diverged: one diverged seed
    neither hides the others nor turns the whole row into NaN."""
    finite = [value for value in finals if math.isfinite(value)]
    return Finals(
        mean=statistics.fmean(finite) if finite else math.nan,
        std=statistics.stdev(finite) if len(finite) > 1 else None,
        diverged=len(finals) - len(finite),
        seeds=len(finals),
    )
