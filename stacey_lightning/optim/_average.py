"""The averaged point: an exponential moving average of the weights, kept beside Stacey's iterates and
evaluated in their place.

Stacey's runs in a study are short and train at a constant lr, and where the lr is high their last
iterate is noisy. An average of the last iterates is a point the run has already paid for; evaluated
there, the development half's winners ended better on six of seven models (benchmarks/results/
suite_dev.md, "Round 15"), as averaging is found to help at high constant learning rates elsewhere (Sanyal
et al. 2023, "Early weight averaging meets high learning rates"; Schedule-Free evaluates at its average
too). Training continues from the iterate: the average is never stepped from.

``average`` moves each average towards its parameter after a step, a = a + (1 - decay) (x - a), starting
at the parameter after its first step. ``swap`` exchanges parameters and averages exactly (copies through
a temporary, no arithmetic), so that evaluation at the average and training from the iterate alternate
without drift: ``Stacey.eval()`` and ``Stacey.train()``.
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
def swap(params: list[Tensor], averages: list[Tensor]) -> None:
    """Exchange each parameter's values with its average's, bit for bit."""
    for param, mean in zip(params, averages):
        held = param.detach().clone()
        param.copy_(mean)
        mean.copy_(held)
