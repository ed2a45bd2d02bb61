"""Stacey in Adam's diagonal geometry: the primal direction of a parameter is Adam's, c / sqrt(v).

Adam's step is steepest descent under a diagonal norm that the second moment v rescales per coordinate:
d = c_hat / (sqrt(v_hat) + eps), with v the exponential average of g^2 (coefficient ``beta_v``, AdamW's
beta2) and both bias-corrected. Like the spectral norm it is a direction, and Stacey's coupling does not
depend on which norm gives it: the step is the "p2" variant's with d in place of s(c)::

    c = beta1 * m + (1 - beta1) * g
    z = z - alpha * c
    v = beta_v * v + (1 - beta_v) * g^2                   # t = this parameter's steps, this one included
    d = (c / (1 - beta1 * beta2^(t-1))) / (sqrt(v / (1 - beta_v^t)) + eps)
    x = tau * z + (1 - tau) * (x - lr * d) - lr * weight_decay * x
    m = beta2 * m + (1 - beta2) * g

c's bias correction is the sum of its weights on the gradients so far: beta1 (1 - beta2^(t-1)) + 1 - beta1.
With beta1 = beta2 = b it is AdamW's 1 - b^t, and c is AdamW's m: tau = 0 and betas (b, b) is
torch.optim.AdamW(betas=(b, beta_v), eps=eps) (tests/optim/test_adam.py checks it), as tau = 0 is Lion at
p = inf and Muon in the spectral norm. AdamW's update has an RMS of about 0.2 lr (the premise of Muon's
``match_rms_adamw``): lr means what it means for AdamW, and for the spectral norm.

The step is elementwise: a parameter sharded by FSDP2 updates the shard each process holds.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stacey_lightning.optim._functional import group_by_device_and_dtype
from stacey_lightning.optim._fused import local_shards

__all__ = ["adam_stacey", "bias_corrections"]


def bias_corrections(t: float, beta1: float, beta2: float, beta_v: float) -> tuple[float, float]:
    """(the sum of c's weights, sqrt of v's) after ``t`` steps: c_hat = c / first, sqrt(v_hat) = sqrt(v) / second."""
    return 1 - beta1 * beta2 ** (t - 1), (1 - beta_v**t) ** 0.5


def adam_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    beta_v: float,
    weight_decay: float,
    eps: float,
    maximize: bool = False,
    foreach: bool | None = None,
) -> None:
    """Functional Stacey step in Adam's geometry over lists of tensors (updated in place, ``steps`` counted
    up by one): the multi-tensor path, or the plain loop where ``foreach=False``."""
    step = _single_tensor_adam_stacey if foreach is False else _multi_tensor_adam_stacey
    step(params, grads, zs, ms, vs, steps, lr=lr, alpha=alpha, tau=tau, beta1=beta1, beta2=beta2, beta_v=beta_v,
         weight_decay=weight_decay, eps=eps, maximize=maximize)  # fmt: skip


def _single_tensor_adam_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    beta_v: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """The plain loop, the oracle of the fast path."""
    for x, g, z, m, v, t in zip(params, grads, zs, ms, vs, steps):
        if maximize:
            g = -g
        t += 1
        first, second = bias_corrections(t.item(), beta1, beta2, beta_v)
        c = beta1 * m + (1 - beta1) * g  # m from before this step
        z.copy_(z - alpha * c)
        v.copy_(beta_v * v + (1 - beta_v) * g * g)
        d = (c / first) / (v.sqrt() / second + eps)
        y = x - lr * d
        # tau * z + (1 - tau) * y, exactly y where z == y (see _functional's notes on exact resume)
        x.copy_(y + tau * (z - y) - lr * weight_decay * x)
        m.copy_(beta2 * m + (1 - beta2) * g)


def _multi_tensor_adam_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    steps: list[Tensor],
    *,
    lr: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    beta_v: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """The same step in multi-tensor kernels, on the shards this process holds, in as few passes as AdamW's
    foreach path: d is never formed (x takes c / (sqrt(v) + eps * second) times (second / first) in one addcdiv,
    the same quotient), the averages are lerps, and what is a no-op is skipped (the pull towards z at tau = 0,
    the decay without weight decay: skipping them leaves every bit as it would be)."""
    # The step counts live on the CPU (as torch.optim's do off CUDA graphs): reading them costs no sync.
    for t in steps:
        t += 1
    local = [local_shards(tensors) for tensors in (params, grads, zs, ms, vs)]
    # The step counts travel with their tensors (the buckets are by the parameters' device and dtype).
    for xs, gs, zs_, ms_, vs_, ts in group_by_device_and_dtype(*local, steps):
        if maximize:
            gs = torch._foreach_neg(gs)
        firsts, seconds = zip(*(bias_corrections(t.item(), beta1, beta2, beta_v) for t in ts))
        c = torch._foreach_lerp(gs, ms_, beta1)  # beta1 * m + (1 - beta1) * g
        if alpha != 0:
            torch._foreach_add_(zs_, c, alpha=-alpha)
        torch._foreach_mul_(vs_, beta_v)
        torch._foreach_addcmul_(vs_, gs, gs, value=1 - beta_v)
        denominators = torch._foreach_sqrt(vs_)
        torch._foreach_add_(denominators, [eps * second for second in seconds])
        if tau != 0:
            pull = torch._foreach_sub(zs_, xs)
        if weight_decay != 0:
            torch._foreach_mul_(xs, 1 - lr * weight_decay)
        if tau != 0:
            torch._foreach_add_(xs, pull, alpha=tau)
        steps_ = [-(1 - tau) * lr * second / first for first, second in zip(firsts, seconds)]
        torch._foreach_addcdiv_(xs, c, denominators, steps_)
        torch._foreach_lerp_(ms_, gs, 1 - beta2)  # beta2 * m + (1 - beta2) * g
