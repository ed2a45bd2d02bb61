"""The user's module as ``find_geometry`` was given it, kept before the probes and given back after them.

As Lightning's ``lr_find`` does, the weights go through the strategy: the first probe's Trainer saves them
(``Trainer.save_checkpoint``, once its strategy has set the module up: moved, sharded by FSDP2's
``configure_model``), every later probe loads them back through its own strategy before its first step,
and the last probe's strategy loads them once more at the end, so sharded parameters come back as they
were. What is not a weight is kept as it was given: the optimizer choice and Stacey config the probes set
(``StaceyMixin``'s ``_optimizer_choice`` and ``_stacey_config_source``), the class (a module without the
mixin is adopted for the probes, unless a strategy has since changed its class as FSDP2's ``fully_shard``
does), the train/eval mode of every submodule and the Trainer it was attached to.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from lightning.pytorch.callbacks import Callback
from typing_extensions import override

__all__ = ["Snapshot"]

# What StaceyMixin keeps on the instance; set_optimizer_choice and set_stacey_config replace them, never
# change them in place, so the objects themselves are kept.
_MIXIN_ATTRIBUTES = ("_optimizer_choice", "_stacey_config_source")
_MISSING = object()


class Snapshot(Callback):
    """Give every probe's Trainer as its first callback; ``restore()`` in a ``finally`` gives the module back."""

    def __init__(self, module: Any) -> None:
        self.module = module
        self.module_class = type(module)
        self.attributes = {name: vars(module).get(name, _MISSING) for name in _MIXIN_ATTRIBUTES}
        self.modes = [(submodule, submodule.training) for submodule in module.modules()]
        self.trainer = vars(module).get("_trainer", _MISSING)  # a LightningModule's, which fit sets
        self.path: str | None = None  # the weights' checkpoint, once the first probe has begun writing it
        self.saved = False
        self.strategy: Any = None  # the latest probe's, which loads the weights back at the end

    @override
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.strategy = trainer.strategy
        if self.path is None:
            # On every rank the path rank 0 chose, as lr_find does: under FSDP2 each rank writes its shards there.
            path = os.path.join(trainer.default_root_dir, f".stacey_find_{uuid.uuid4().hex}.ckpt")
            self.path = trainer.strategy.broadcast(path)
            trainer.save_checkpoint(self.path, weights_only=True)
            self.saved = True
        else:
            self._load_weights()

    def restore(self) -> None:
        """The weights (if a probe saved them), then everything else, and the checkpoint removed."""
        try:
            if self.saved:
                self._load_weights()
        finally:
            self._restore_attributes()
            if self.path is not None:
                self.strategy.barrier("stacey_find_restored")
                self.strategy.remove_checkpoint(self.path)

    def _load_weights(self) -> None:
        strategy = self.strategy
        # Weights only: FSDP2's strategy loads the optimizer states of its optimizers together with the
        # weights, and a probe's optimizer is its own (p, lr), with no state before its first step.
        optimizers = strategy.optimizers
        strategy.optimizers = []
        try:
            checkpoint = strategy.load_checkpoint(self.path, weights_only=False)  # the finder's own file
            strategy.load_model_state_dict(checkpoint, strict=True)
        finally:
            strategy.optimizers = optimizers

    def _restore_attributes(self) -> None:
        module = self.module
        if vars(type(module)).get("_stacey_adopted_from") is self.module_class:
            # The finder's adoption undone; a class swapped in since (FSDP2's fully_shard does) is kept.
            module.__class__ = self.module_class
        for name, value in self.attributes.items():
            if value is not _MISSING:
                setattr(module, name, value)
            elif name in vars(module):
                delattr(module, name)
        for submodule, training in self.modes:
            submodule.training = training
        if self.trainer is not _MISSING:
            module.trainer = self.trainer
