"""Learning-rate schedules for Stacey, stepped once per optimizer step.

Stacey scales its dual step with lr (alpha_t = alpha * lr / initial lr), so a schedule drives both
step sizes.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from stacey_lightning.lightning.config import scheduler_class

__all__ = ["WarmupCosine", "build_scheduler"]


class WarmupCosine:
    """The lr factor at optimizer step ``step`` (0-based): linear warmup, then cosine decay to
    ``min_lr_ratio`` at ``total_steps``, flat after that.

    The warmup factor is (step + 1) / (warmup_steps + 1), so that the first step already moves
    the parameters. A callable object rather than a closure, so LambdaLR's state_dict saves it.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: Optimizer, schedule: dict[str, Any], total_steps: float) -> dict[str, Any] | None:
    """Lightning's lr_scheduler config for a validated ``schedule`` (StaceyConfig.schedule), or None
    for the constant schedule.

    Args:
        optimizer: the Stacey optimizer.
        schedule: ``{"name": ..., **options}``.
        total_steps: optimizer steps in the whole fit (``trainer.estimated_stepping_batches``);
            needed by warmup_cosine only.
    """
    name = schedule["name"]
    options = {key: value for key, value in schedule.items() if key != "name"}
    if name == "constant":
        return None
    if name == "warmup_cosine":
        if not math.isfinite(total_steps):
            raise ValueError(
                "schedule warmup_cosine needs a finite number of optimizer steps: set max_epochs or "
                "max_steps on the Trainer"
            )
        total_steps = int(total_steps)
        warmup_steps = options.get("warmup_steps", round(options.get("warmup_fraction", 0.0) * total_steps))
        scheduler = LambdaLR(
            optimizer, WarmupCosine(warmup_steps, total_steps, float(options.get("min_lr_ratio", 0.0)))
        )
    else:
        scheduler = scheduler_class(name)(optimizer, **options)
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}
