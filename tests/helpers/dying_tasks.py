"""Tasks whose trials take their process down, as the kernel's OOM killer or a crash in an extension would:
importable by the worker processes the tests start."""

from __future__ import annotations

import math
import os
import signal

from stacey_lightning.tasks.digits import DigitsModule, make_digits

TINY = {"foreach": True, "hidden": 8}


class _KilledAtPInf(DigitsModule):
    """SIGKILLs its own process in the first training step when its Stacey config has p = inf."""

    def training_step(self, batch, batch_idx):
        if math.isinf(self.stacey_config().p):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().training_step(batch, batch_idx)


def make_killed_at_p_inf(trial=None, seed: int = 0):
    module, datamodule = make_digits(trial, seed=seed, **TINY)
    module.__class__ = _KilledAtPInf
    return module, datamodule


class _AlwaysKilled(DigitsModule):
    def training_step(self, batch, batch_idx):
        os.kill(os.getpid(), signal.SIGKILL)


def make_always_killed(trial=None, seed: int = 0):
    """Every trial SIGKILLs its process in its first training step."""
    module, datamodule = make_digits(trial, seed=seed, **TINY)
    module.__class__ = _AlwaysKilled
    return module, datamodule
