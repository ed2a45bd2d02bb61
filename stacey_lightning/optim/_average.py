"""The averaged point: an exponential moving average of the weights, kept beside Stacey's iterates and
evaluated in their place.

Stacey's runs in a study are short and train at a constant lr, and where the lr is high their last
iterate is noisy. An average of the last iterates is a point the run has already paid for; evaluated
there, the development half's winners ended better on six of seven models (benchmarks/results/
suite_dev.md, "Round 15"), as averaging is found to help at high constant learning rates elsewhere (Sanyal
et al. 2023, "Early weight averaging meets high learning rates"; Schedule-Free evaluates at its average
too). Training continues from the iterate: the average is never stepped from. Only parameters are
averaged: buffers (BatchNorm's running statistics) stay the iterate's.

``average`` moves each average towards its parameter after a step, a = a + (1 - decay) (x - a), starting
at the parameter after its first step. ``swap`` puts an average's values in its parameter and returns the
parameter's former values as a new tensor, the parameter's average from then on: a copy, not arithmetic,
so evaluation at the average and training from the iterate alternate bit for bit (``Stacey.eval()`` and
``Stacey.train()``, which put it in a new state mapping). The old average tensor is left as it was, so a
state dict taken before the swap still holds what it held (the mixin takes a checkpoint's optimizer state
in eval mode, then switches back).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["average", "swap"]


@torch.no_grad()
def average(params: list[Tensor], averages: list[Tensor], decay: float, foreach: bool | None = None) -> None:
    """averages += (1 - decay) * (params - averages), in place."""
    if not params:
        return
    if foreach is False:
        for param, mean in zip(params, averages):
            mean.lerp_(param, 1.0 - decay)
    else:
        torch._foreach_lerp_(averages, params, 1.0 - decay)


@torch.no_grad()
def swap(param: Tensor, mean: Tensor) -> Tensor:
    """Copy ``mean`` into ``param``; return ``param``'s former values (a new tensor)."""
    held = param.detach().clone(memory_format=torch.contiguous_format)
    param.copy_(mean)
    return held
