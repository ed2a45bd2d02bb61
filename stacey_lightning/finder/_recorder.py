"""The callback of every probe: it sets each optimizer step's lr, records the training loss and c99, and
stops the run at its planned length or, in a range test, once the loss has turned. Both are read as means
over the run's processes, so that under DDP or FSDP2 every rank takes the same decisions.

A range test reads its loss relative to a reference: each step's loss over the loss the same batch gave at
the initial weights (a run at lr 0 over the same batches, ``reference``). Every probe starts from the same
weights and seed, so its k-th batch is the reference's k-th, and the ratio leaves out what the batches differ
by: on an autoencoder of digits one batch's loss was 2.29 and the next 0.78 at lr 0, and the range tests had
stopped at a "cliff" of that noise, six steps in, at a step 650 times below the real one
(benchmarks/results/suite_dev.md, "Round 8")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from stacey_lightning.search.calibration import measure

__all__ = ["Recorder", "STOP_SHARE"]

# A range test stops once its running loss has given back this share of what it gained from its start.
STOP_SHARE = 0.5
_REAL_GAIN = 0.1  # ... a gain of at least this share of the starting loss, so that early noise stops nothing
_RUNNING = 0.7  # the running mean's weight on the past, for the stop rule only (the cliff uses ``smooth``)


class Recorder(Callback):
    """Sets each step's lr (every param group keeps its ratio to the config's lr), records the training
    loss, measures c99 now and then, and stops the run at its planned length or, in a range test, once
    the loss has turned: not finite, or its running mean back above where it started, or (after a real
    gain) above the lowest by ``STOP_SHARE`` of that gain.

    ``plan(steps_per_epoch) -> (steps, lr_of_step)`` is called when training starts; steps are optimizer
    steps, counted from 0.
    """

    def __init__(self, plan, *, measure_every=False, measure_end=False, stop_at_cliff=False, reference=None) -> None:
        self.plan = plan
        # The losses at lr 0 that the stop rule divides by (every one positive and finite), or None.
        self.reference = reference
        self.measure_every = measure_every  # c99 every twentieth of the run
        self.measure_end = measure_end  # c99 at the run's last step
        self.stop_at_cliff = stop_at_cliff
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.relative: list[float] = []  # each loss over the reference's (the loss itself without one)
        self.scales: list[tuple[int, float]] = []  # (step index, c99)
        self.length = 0
        self.lr_of_step: Any = None
        self.lr = 0.0  # of the step the batches in flight belong to
        self.pending: list[float] = []  # losses of those batches
        self.base: list[float] = []
        self.running: float | None = None
        self.first = math.inf
        self.lowest = math.inf

    @override
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if not math.isfinite(trainer.num_training_batches):
            raise ValueError(
                "the geometry finder counts steps per epoch: give the training data a length, or set "
                "limit_train_batches (--trainer limit_train_batches=N)"
            )
        steps_per_epoch = max(1, math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches))
        self.length, self.lr_of_step = self.plan(steps_per_epoch)
        self.base = [group["lr"] for group in trainer.optimizers[0].param_groups]

    @override
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        # Steps are optimizer steps: under gradient accumulation, every batch of one step gets its lr.
        lr = self.lr_of_step(trainer.global_step)
        reference = self.base[0] or 1.0
        for group, base in zip(trainer.optimizers[0].param_groups, self.base):
            group["lr"] = base / reference * lr  # a kind's lr_scale is kept
        self.lr = lr

    @override
    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        batch_loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        self.pending.append(_mean_over_processes(trainer, batch_loss.detach()))
        if trainer.global_step == len(self.losses):  # a batch accumulated towards the next step
            return
        loss = sum(self.pending) / len(self.pending)  # the step's loss: the mean over its batches
        self.pending.clear()
        self.lrs.append(self.lr)
        self.losses.append(loss)
        step = len(self.losses)
        relative = loss / self.reference[step - 1] if self.reference and step <= len(self.reference) else loss
        self.relative.append(relative)
        every = self.measure_every and (step == 1 or step % max(1, self.length // 20) == 0)
        if every or (self.measure_end and step >= self.length):
            scale = measure(trainer.optimizers[0])  # of this process's shards, under FSDP2
            scale = _mean_over_processes(trainer, torch.tensor(math.nan if scale is None else scale))
            if math.isfinite(scale):
                self.scales.append((step - 1, scale))
        if step >= self.length or not math.isfinite(loss):
            trainer.should_stop = True
            return
        self.running = relative if self.running is None else _RUNNING * self.running + (1 - _RUNNING) * relative
        if step == 1:
            self.first = self.running
        self.lowest = min(self.lowest, self.running)
        gain = self.first - self.lowest
        turned = gain > _REAL_GAIN * abs(self.first) and self.running > self.lowest + STOP_SHARE * gain
        if self.stop_at_cliff and step >= 5 and turned:
            trainer.should_stop = True


def _mean_over_processes(trainer: Any, value: torch.Tensor) -> float:
    """``value``'s mean over the run's processes (NaN where one has NaN): each sees its own batches and, under
    FSDP2, its own shards, but all of them must stop at the same step and train at the same lr."""
    return float(trainer.strategy.reduce(value.to(trainer.strategy.root_device, torch.float32), reduce_op="mean"))
