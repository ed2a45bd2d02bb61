"""The workloads of the suite and its fixed split into ``dev`` and ``validation`` halves.

Defaults are chosen on the ``dev`` workloads only; the ``validation`` workloads are run to report, never to
choose (see the package docstring). Moving a workload from one half to the other, or retuning a default
after a validation run, voids the validation numbers reported so far.

Nothing here imports torch: ``--list`` answers at once. A workload names its task by import path
(``module:function``), imported when it is first built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stacey_lightning._imports import import_object

__all__ = ["Workload", "WORKLOADS", "DEV", "VALIDATION", "SPLITS", "select"]

DEV = "dev"
VALIDATION = "validation"
SPLITS = (DEV, VALIDATION)
_TASKS = "benchmarks.suite.workloads"


@dataclass(frozen=True)
class Workload:
    """One workload: a task in the repository's form, its metric, its length and its side of the split.

    ``task`` is a ``make(trial=None, seed=0, **options) -> (LightningModule, LightningDataModule)`` named
    by import path; its defaults are the full workload. ``epochs`` is one run's length. ``seconds`` is the
    CPU time of one such run with Stacey's default config, measured (see ``WORKLOADS``).
    ``smoke_options`` shrink the model and the data for checks that take seconds.
    """

    name: str
    split: str
    architecture: str
    task: str
    monitor: str
    direction: str  # "maximize" or "minimize"
    epochs: int
    seconds: float
    space: str = "default"  # Stacey's search-space preset
    smoke_options: Mapping[str, Any] = field(default_factory=dict)

    def make(self) -> Callable:
        """The task callable (imports torch and Lightning)."""
        return import_object(self.task, what=f"workload {self.name!r}")


# seconds: the CPU time of one run of `epochs` with Stacey's default config (StaceyConfig(): p 4, lr 1e-2),
# build and fit with its validation passes, one torch thread, as `python -m benchmarks.suite --list --measure`
# measures it: 2026-12-06, 2 cores AMD EPYC, no GPU, torch 2.14.1, Python 3.11.7, beside other agents' jobs
# (load average 4 to 7), whose wall-clock times were 1.1 to 1.6 times these. With one thread, the CPU time is
# about what a run takes on an idle core.
WORKLOADS = (
    Workload("cancer-mlp", DEV, "mlp", f"{_TASKS}.mlp:make_cancer_mlp", "val_acc", "maximize", 20, 2.0,
             smoke_options={"hidden": 8}),
    Workload("digits-cnn", DEV, "cnn", f"{_TASKS}.cnn:make_digits_cnn", "val_acc", "maximize", 8, 4.3,
             space="vision", smoke_options={"channels": 4}),
    Workload("mnist1d-cnn", DEV, "cnn", f"{_TASKS}.cnn:make_mnist1d_cnn", "val_acc", "maximize", 12, 7.3,
             space="vision", smoke_options={"channels": 4, "samples": 400}),
    Workload("digits-autoencoder", DEV, "autoencoder", f"{_TASKS}.autoencoder:make_digits_autoencoder",
             "val_loss", "minimize", 15, 3.7, smoke_options={"hidden": 8}),
    Workload("stdlib-gru", DEV, "rnn", f"{_TASKS}.rnn:make_stdlib_gru", "val_bpc", "minimize", 4, 8.5,
             space="language", smoke_options={"hidden": 8, "max_bytes": 6_000, "context": 16}),
    Workload("stdlib-transformer-narrow", DEV, "transformer", f"{_TASKS}.transformer:make_stdlib_transformer_narrow",
             "val_bpc", "minimize", 3, 6.0, space="language",
             smoke_options={"width": 8, "max_bytes": 6_000, "context": 16}),
    Workload("recall-transformer", DEV, "transformer", f"{_TASKS}.transformer:make_recall_transformer", "val_acc",
             "maximize", 8, 10.9, smoke_options={"width": 8, "samples": 400}),
    Workload("diabetes-mlp", VALIDATION, "mlp", f"{_TASKS}.mlp:make_diabetes_mlp", "val_loss", "minimize", 30, 2.0,
             smoke_options={"hidden": 8}),
    Workload("digits-vit", VALIDATION, "vit", f"{_TASKS}.vit:make_digits_vit", "val_acc", "maximize", 10, 9.8,
             space="vision", smoke_options={"width": 8}),
    Workload("stdlib-transformer-wide", VALIDATION, "transformer", f"{_TASKS}.transformer:make_stdlib_transformer_wide",
             "val_bpc", "minimize", 6, 19.0, space="language",
             smoke_options={"width": 8, "max_bytes": 6_000, "context": 16}),
    Workload("recall-lstm", VALIDATION, "rnn", f"{_TASKS}.rnn:make_recall_lstm", "val_acc", "maximize", 8, 10.2,
             smoke_options={"hidden": 8, "samples": 400}),
)  # fmt: skip


def select(split: str = "all", names: Sequence[str] | None = None) -> list[Workload]:
    """The workloads of ``split`` ("dev", "validation" or "all"), in registry order; with ``names``, only
    those (each must exist, in that split). Raises a ValueError naming the unknown ones and the choices."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"Invalid split: {split!r} (choose dev, validation or all)")
    chosen = [workload for workload in WORKLOADS if split == "all" or workload.split == split]
    if names is None:
        return chosen
    known = [workload.name for workload in chosen]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"Unknown workload(s) in split {split}: {', '.join(unknown)} (choose from {', '.join(known)})")
    return [workload for workload in chosen if workload.name in names]
