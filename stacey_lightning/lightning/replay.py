"""``StaceyReplay``: the callback that makes a LightningCLI fit replay a ``stacey-tune`` trial.

``stacey-tune --lightning-config config.yaml`` writes ``best_cli.yaml`` with this callback in it, for
``python main.py fit --config config.yaml --config out/best_cli.yaml``:

    trainer:
      callbacks:
      - class_path: stacey_lightning.lightning.replay.StaceyReplay
        init_args: {config: {p: 3.0, lr: 0.01, ...}, monitor: val_acc, expected: 0.9722}

Why a callback: LightningCLI seeds once, before it builds the model, the data and the Trainer, while
a trial seeds again just before ``fit``. The callback re-applies the run's seed (``seed_everything``'s
``PL_GLOBAL_SEED``) when fit sets up and again when training starts, in the trials as under
LightningCLI, so both train from the same random state whatever was built before; a datamodule's
``setup`` that draws from the global generator (``random_split`` without a ``generator``) still runs
before the first re-seed and is the one thing that may differ. With ``config`` it hands the tuned
Stacey config to the module, kinds and schedule included, giving it ``StaceyMixin`` first if it has
none (``lightning.adopt``, as the trials did), unless the fit takes LightningCLI's own optimizer (an
``optimizer`` section); with ``monitor`` and ``expected`` it prints the fit's final value next to the
trial's.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["StaceyReplay"]


class StaceyReplay(Callback):
    """Re-seed at setup and at the start of training; optionally set a StaceyMixin module's config.

    Args:
        config: a Stacey config mapping (``best.yaml``'s), handed to ``set_stacey_config`` (after
            ``adopt`` for a module without StaceyMixin) unless LightningCLI injects its own optimizer.
            Default None.
        monitor: the logged metric the study judged trials by. Default None.
        expected: the best trial's final value of ``monitor``, printed beside this fit's. Default None.
    """

    def __init__(self, config: dict[str, Any] | None = None, monitor: str | None = None, expected: float | None = None):
        self.config = config
        self.monitor = monitor
        self.expected = expected

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # LightningCLI's optimizer injection (an ``optimizer`` section) sets configure_optimizers on the
        # instance: that optimizer is the file's choice, and the config is left unused.
        if self.config is not None and "configure_optimizers" not in vars(pl_module):
            from stacey_lightning.lightning.adopt import adopt

            adopt(pl_module).set_stacey_config(self.config)
        _reseed()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _reseed()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor) if self.monitor else None
        if value is not None:
            trial = "" if self.expected is None else f" (the tuning trial: {self.expected:.6g})"
            rank_zero_info(f"[stacey] {self.monitor} = {float(value):.6g}{trial}")


def _reseed() -> None:
    """``seed_everything`` again with the run's seed, if it was seeded (PL_GLOBAL_SEED)."""
    if "PL_GLOBAL_SEED" in os.environ:
        seed_everything(int(os.environ["PL_GLOBAL_SEED"]), workers=True, verbose=False)
