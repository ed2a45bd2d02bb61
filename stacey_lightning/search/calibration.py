"""The gradient's scale a study measures, which turns a coordinate step into Stacey's lr for any p.

Stacey's step moves a coordinate by lr * |s(c)| ~ lr * |c| ** (1/(p-1)): at p = inf by lr whatever the
gradients, at smaller p by an amount that follows the size of c, which differs between models by
decades. So the good lr moves with p (on the small transformer: 3e-3 at p = inf, 0.08 at p = 4, 3 at
p = 2), and an lr sampled independently of p mostly misses. Measured on two models, what stays put
across p is the step of a large coordinate, lr * c99 ** (1/(p-1)) with c99 the 99th percentile of
|c| (benchmarks/results/geometry.md). A study therefore records c99 after its first Stacey trial,
from the momentum that trial ends with (``GRADIENT_SCALE``), and later trials turn their sampled step
into lr with it (``search_space.coordinate_scale``).
"""

from __future__ import annotations

from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from stacey_lightning.attributes import GRADIENT_SCALE
from stacey_lightning.optim._fused import local_shards

__all__ = ["measure", "study_gradient_scale", "QUANTILE", "SAMPLE"]

QUANTILE = 0.99
SAMPLE = 1 << 20  # coordinates read at most: a strided sample of a large model's momentum


def measure(optimizer: torch.optim.Optimizer) -> float | None:
    """The ``QUANTILE`` of |m| over the optimizer's nonzero finite momentum coordinates, or None without any."""
    momenta = [state["m"] for state in optimizer.state.values() if "m" in state]
    total = sum(m.numel() for m in momenta)
    if not total:
        return None
    stride = max(1, total // SAMPLE)
    # A DTensor's local shard is a sample of the whole.
    sample = torch.cat([m.detach().reshape(-1)[::stride].abs().float().cpu() for m in local_shards(momenta)])
    sample = sample[(sample > 0) & torch.isfinite(sample)]  # a diverged trial's inf and nan say nothing
    return float(torch.quantile(sample, QUANTILE)) if sample.numel() else None


def study_gradient_scale(study: optuna.Study) -> float | None:
    """The scale the study's first finished Stacey trial measured, or None before one has."""
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    for trial in study.get_trials(deepcopy=False, states=finished):
        value: Any = trial.user_attrs.get(GRADIENT_SCALE)
        if value is not None:
            return float(value)
    return None
