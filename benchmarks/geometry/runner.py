"""One run of a geometry experiment: what it trains (``Run``), how (``train``), and its line of the CSV.

A run trains through ``stacey_lightning.run`` as a tuning trial does: ``run.build`` seeds and builds the
task, ``run.use_optimizer`` gives it Stacey or a baseline, ``run.make_trainer`` and ``run.fit`` train it
(seeded again just before fit). The rows of ``geometry.csv`` recorded before 2026-12-03 came from an
earlier runner that seeded only before building; the first run of exp1 gives its recorded 3.9810 under
this one. Near an lr's stability edge, bit-level differences move a result by up to ±0.06 (geometry.md §1).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Run", "train", "finished", "csv_row", "append_row", "CSV", "FIELDS"]

CSV = Path(__file__).resolve().parents[1] / "results" / "geometry.csv"
FIELDS = (
    "exp",
    "name",
    "task",
    "optimizer",
    "seed",
    "epochs",
    "max_chars",
    "config",
    "metric",
    "value",
    "steps",
    "seconds",
    "extra",
)


@dataclass(frozen=True)
class Run:
    """One training run: a task at a seed, trained with one optimizer configuration."""

    name: str  # unique within its experiment: a rerun skips the names already in the CSV
    optimizer: str  # "stacey", or a baseline name ("adamw", "sgd", "lion")
    config: Mapping[str, Any]  # Stacey's config (keys it overrides), or the baseline's options
    task: str = "textlm"  # "textlm" (small, batch 16) or "digits"
    seed: int = 0
    epochs: int = 5
    max_chars: int = 60_000  # textlm's corpus size: 60000 is 265 steps in 5 epochs, 200000 is 176 an epoch
    max_steps: int | None = None  # stop early, then validate the final weights
    grad_stats: bool = False  # record |g|, |m|, |x|, |c| at a few steps (GradStats)
    dump_c: str | None = None  # and save c at the last of them to this file (for lr_transfer)

    def task_options(self) -> dict[str, Any]:
        if self.task == "textlm":
            return {"size": "small", "batch_size": 16, "max_chars": self.max_chars, "foreach": True}
        return {"foreach": True}


def train(spec: Run) -> dict[str, Any]:
    """Train ``spec`` on the CPU (one device) and return its CSV fields: metric, value (nan when the run
    fails: a diverged run is a result), steps, seconds, extra (the gradient statistics, as JSON)."""
    from stacey_lightning import run
    from stacey_lightning.tasks import resolve_task

    from .grad_stats import GradStats

    task = resolve_task(spec.task)
    module, datamodule = run.build(task.make, seed=spec.seed, options=spec.task_options())
    run.use_optimizer(module, run.optimizer_choice(spec.optimizer, dict(spec.config)))
    callbacks = [GradStats(dump=spec.dump_c)] if spec.grad_stats else []
    trainer_kwargs = {"accelerator": "cpu", "devices": 1, "max_steps": spec.max_steps or -1}
    trainer = run.make_trainer(max_epochs=spec.epochs, logger=False, callbacks=callbacks, trainer_kwargs=trainer_kwargs)
    started = time.monotonic()
    try:
        run.fit(trainer, module, datamodule, spec.seed)
        if spec.max_steps:  # stopped mid-epoch: the last validation saw older weights
            value = float(trainer.validate(module, datamodule, verbose=False)[0][task.monitor])
        else:
            value = run.final_metric(trainer, task.monitor)
    except Exception as error:  # a run that diverges until it fails is recorded, not fatal to the batch
        print(f"failed: {spec.name}: {type(error).__name__}: {error}", flush=True)
        value = None
    return {
        "metric": task.monitor,
        "value": float("nan") if value is None else value,
        "steps": trainer.global_step,
        "seconds": round(time.monotonic() - started, 1),
        "extra": json.dumps({"grad_stats": callbacks[0].records}) if callbacks else "",
    }


def finished(path: Path) -> set[tuple[str, str]]:
    """The (experiment, run name) pairs already in the CSV at ``path``."""
    if not path.exists():
        return set()
    with path.open(newline="") as file:
        return {(row["exp"], row["name"]) for row in csv.DictReader(file)}


def csv_row(experiment: str, spec: Run, result: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "exp": experiment,
        "name": spec.name,
        "task": spec.task,
        "optimizer": spec.optimizer,
        "seed": spec.seed,
        "epochs": spec.epochs,
        "max_chars": spec.max_chars if spec.task == "textlm" else "",
        "config": json.dumps(spec.config, default=str),
        **result,
    }


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append ``row`` to the CSV at ``path`` (written with its header when new), as each run finishes."""
    new = not path.exists()
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
