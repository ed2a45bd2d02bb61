"""What a comparison produces: runs, each optimizer's tuning, and the whole; shared by its modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RunResult", "Tuned", "Comparison"]


@dataclass
class Tuned:
    """One optimizer's study: its best config, the task parameters of that trial, and the budget spent."""

    optimizer: str
    study_name: str
    options: dict[str, Any]
    task_params: dict[str, Any]
    best_value: float
    complete: int
    pruned: int
    failed: int
    epochs: int  # epochs trained over all trials: the reports each trial made to the pruner


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
