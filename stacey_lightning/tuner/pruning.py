"""``StaceyPruning``: the Lightning callback that reports a trial's metric to Optuna and stops the run
when the pruner says so, or when the loss stops being finite, on every strategy.

It works on a single device, with ``ddp_spawn`` and with plain ``ddp`` (Lightning's subprocess
launcher or torchrun) because only global rank 0 talks to Optuna: rank 0 reports the monitored value
and asks the pruner, then broadcasts the decision, and every rank sets ``trainer.should_stop``
together, so no rank waits in a collective that the others never enter. Other ranks may be given
``trial=None``. The reason a run stopped early is stored on the trial as the user attribute
``stop_reason``, so the process that owns the trial reads it back even when rank 0 ran in a spawned
process (``ddp_spawn``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from stacey_lightning.attributes import EPOCHS, STOP_REASON

__all__ = ["StaceyPruning"]
_CONTINUE, _PRUNE, _NONFINITE, _MISSING = "continue", "prune", "nonfinite", "missing"


class StaceyPruning(Callback):
    """Report ``monitor`` to ``trial`` after every validation and stop when the trial should be pruned.

    Args:
        trial: the ``optuna.Trial`` of this run on global rank 0; ``None`` is allowed on other ranks.
        monitor: the logged metric to report, e.g. "val_acc" (read from ``trainer.callback_metrics``).
        check_loss: stop as soon as a training step's loss is NaN or infinite (one host
            synchronisation per step to read the flag). Default True.
        prune: ask the pruner after each report; False reports only (a confirmation run). Default True.

    After ``fit``, ``stop_reason`` is ``None`` if the run finished, else a sentence saying why it
    stopped; ``pruned`` tells whether the pruner (not a non-finite value) stopped it.
    """

    def __init__(self, trial: Any, monitor: str, check_loss: bool = True, prune: bool = True) -> None:
        self.trial = trial
        self.monitor = monitor
        self.check_loss = check_loss
        self.prune = prune
        self.stop_reason: str | None = None
        self.pruned = False
        self._reports = 0

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not self.check_loss or self.stop_reason is not None:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        nonfinite = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        # Any rank's non-finite loss stops every rank (the reduction is a collective all ranks enter).
        if trainer.strategy.reduce_boolean_decision(nonfinite, all=False):
            self._stop(
                trainer,
                _NONFINITE,
                f"non-finite training loss at epoch {trainer.current_epoch}, step {trainer.global_step}",
            )

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.stop_reason is not None:
            return
        decision = (_CONTINUE, "")
        if trainer.is_global_zero:
            decision = self._decide(trainer)
        action, message = trainer.strategy.broadcast(decision, src=0)
        if action == _MISSING:
            raise KeyError(message)
        if action != _CONTINUE:
            self._stop(trainer, action, message)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # What the trial cost (budget.py), written where the fit ran: under ddp_spawn the caller's Trainer
        # gets the weights and metrics back, but not the epoch count.
        if trainer.is_global_zero and self.trial is not None:
            self.trial.set_user_attr(EPOCHS, trainer.current_epoch)

    def _decide(self, trainer: Trainer) -> tuple[str, str]:
        """Rank 0 only: report the monitored value and ask the pruner."""
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            logged = ", ".join(sorted(trainer.callback_metrics)) or "none"
            return _MISSING, (
                f"StaceyPruning: monitor {self.monitor!r} was not logged (logged metrics: {logged}); "
                "log it with self.log in validation_step or pass another monitor"
            )
        value = float(value)
        epoch = trainer.current_epoch
        if not math.isfinite(value):
            return _NONFINITE, f"non-finite {self.monitor} ({value}) at epoch {epoch}"
        self.trial.report(value, step=self._reports)
        self._reports += 1
        # After the last validation no training is left to save: a trial that got there completes with
        # its value (Hyperband would otherwise prune some at their last report, and lose their result).
        if not _training_left(trainer):
            return _CONTINUE, ""
        if self.prune and self.trial.should_prune():
            return _PRUNE, f"pruned at epoch {epoch} with {self.monitor} = {value:.6g}"
        return _CONTINUE, ""

    def _stop(self, trainer: Trainer, action: str, message: str) -> None:
        self.stop_reason = message
        self.pruned = action == _PRUNE
        trainer.should_stop = True
        if trainer.is_global_zero and self.trial is not None:
            self.trial.set_user_attr(STOP_REASON, message)


def _training_left(trainer: Trainer) -> bool:
    """Whether the fit trains on after this validation (False at the end of its last epoch or step)."""
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return False
    last_epoch = trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs - 1
    return not (last_epoch and trainer.fit_loop.epoch_loop.done)
