"""The Lightning side every workload shares: one module that trains a network for an objective, and one
data module over tensors. A workload only brings its network and its data.

Objectives and what they log (``train_loss`` every step; the rest once per validation epoch, averaged over
every validation example, or every character for a language model):

==============  ====================================  =========================================
objective       loss                                  validation metrics
==============  ====================================  =========================================
classification  cross-entropy of logits (n, classes)  ``val_loss``, ``val_acc``
regression      mean squared error                    ``val_loss``
reconstruction  mean squared error against the input  ``val_loss``
language        cross-entropy per position (n, t, v)  ``val_loss`` (nats per byte), ``val_bpc``
==============  ====================================  =========================================

The module has no hyperparameters of Stacey's: it trains with ``StaceyConfig``'s defaults unless given a
config or another optimizer (``set_optimizer_choice``, as every tool does), so "the default Stacey run" of
a workload is Stacey's own default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanMetric

from stacey_lightning.lightning.mixin import StaceyMixin
from stacey_lightning.tasks.digits import EpochShuffle

__all__ = ["SuiteModule", "TensorDataModule", "OBJECTIVES", "Split"]

OBJECTIVES = ("classification", "regression", "reconstruction", "language")
# (train tensors, validation tensors): inputs first, then targets.
Split = tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]
_VALIDATION_BATCH = 512  # validation has no optimizer step: larger batches only make it faster


class SuiteModule(StaceyMixin, pl.LightningModule):
    """Trains ``network`` for ``objective`` (one of ``OBJECTIVES``) on batches (inputs, targets)."""

    def __init__(self, network: nn.Module, objective: str) -> None:
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"Invalid objective: {objective!r} (choose one of {', '.join(OBJECTIVES)})")
        self.network = network
        self.objective = objective
        self.val_loss = MeanMetric()
        self.val_acc = MeanMetric()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.network(inputs)

    def _loss(self, outputs: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.objective == "regression":
            return F.mse_loss(outputs, targets)
        if self.objective == "reconstruction":
            return F.mse_loss(outputs, inputs)
        return F.cross_entropy(outputs.flatten(0, -2), targets.flatten())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        loss = self._loss(self(inputs), inputs, targets)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, targets = batch
        outputs = self(inputs)
        self.val_loss.update(self._loss(outputs, inputs, targets), weight=targets.numel())
        if self.objective == "classification":
            self.val_acc.update((outputs.argmax(dim=-1) == targets).float().mean(), weight=targets.numel())

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log("val_loss", loss)
        if self.objective == "classification":
            self.log("val_acc", self.val_acc.compute())
            self.val_acc.reset()
        if self.objective == "language":
            self.log("val_bpc", loss / math.log(2))


class TensorDataModule(pl.LightningDataModule):
    """The tensors ``load()`` returns (a ``Split``), loaded in ``setup``; the training order depends on
    (``seed``, epoch) only (``EpochShuffle``), so a resumed run sees the batches an uninterrupted one does."""

    def __init__(self, load: Callable[[], Split], batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.load = load
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        train, validation = self.load()
        self.train_set = TensorDataset(*train)
        self.val_set = TensorDataset(*validation)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=EpochShuffle(len(self.train_set), self.seed)
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=_VALIDATION_BATCH)
