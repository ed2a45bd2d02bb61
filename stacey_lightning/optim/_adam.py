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

The step is elementwise: a parameter sharded by FSDP2 updates the shard each process holds. On the CPU in
float32 it is one pass of a C kernel over x, g, z, m and v (cpu_kernel.c's stacey_adam), where the multi-tensor
path makes nine; the multi-tensor path serves every other device and dtype (there is no compiled kernel: on
CUDA torch's own foreach kernels are what AdamW runs too).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stacey_lightning.optim import _cpu_kernel
from stacey_lightning.optim._functional import group_by_device_and_dtype
from stacey_lightning.optim._fused import fused_on_cpu, local_shards

__all__ = ["adam_stacey", "bias_corrections", "coefficients"]


def bias_corrections(t: float, beta1: float, beta2: float, beta_v: float) -> tuple[float, float]:
    """(the sum of c's weights, sqrt of v's) after ``t`` steps: c_hat = c / first, sqrt(v_hat) = sqrt(v) / second."""
    return 1 - beta1 * beta2 ** (t - 1), (1 - beta_v**t) ** 0.5


def coefficients(
    t: float, *, lr: float, alpha: float, tau: float, beta1: float, beta2: float, beta_v: float,
    weight_decay: float, eps: float, maximize: bool,
) -> tuple[float, ...]:  # fmt: skip
    """The C kernel's inputs at step ``t``, in its order, formed once per step on the host (in float64): the
    bias corrections folded into the step and eps as the multi-tensor path folds them, and the gradient's sign
    (maximize) into the two coefficients that multiply it (g^2 has none)."""
    first, second = bias_corrections(t, beta1, beta2, beta_v)
    sign = -1.0 if maximize else 1.0
    return (beta1, sign * (1 - beta1), alpha, 1 - lr * weight_decay, tau, (1 - tau) * lr * second / first,
            eps * second, beta_v, 1 - beta_v, beta2, sign * (1 - beta2))  # fmt: skip


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
    fused: bool | None = None,
) -> None:
    """Functional Stacey step in Adam's geometry over lists of tensors (updated in place, ``steps`` counted
    up by one): the C kernel for float32 CPU tensors unless ``fused=False`` or ``foreach=True`` (the
    multi-tensor path then, and for every other tensor), the plain loop where ``foreach=False``."""
    if fused and foreach:
        raise ValueError("Stacey: fused=True and foreach=True are mutually exclusive; choose one")
    if foreach is False:
        step = _single_tensor_adam_stacey
    elif fused is False or foreach or torch.compiler.is_compiling():  # a traced step cannot call C
        step = _multi_tensor_adam_stacey
    else:
        step = _fused_adam_stacey
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


def _fused_adam_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    vs: list[Tensor],
    steps: list[Tensor],
    **hyperparameters: float,
) -> None:
    """The C kernel on the float32 CPU shards this process holds, one call per step count (a parameter that
    skipped steps has its own bias corrections) over the small tensors packed; the multi-tensor path for the
    rest, and for all of them where the kernel cannot be built."""
    native = _cpu_kernel.adam_kernel()
    local = [local_shards(tensors) for tensors in (params, grads, zs, ms, vs)]
    # A DTensor's local shard may be an object made for this step: the state it stands for cannot be moved.
    own_state = all(z is z_local for z, z_local in zip(zs, local[2]))
    rest: list[int] = []
    by_step: dict[float, list[int]] = {}
    for i, x in enumerate(local[0]):
        if native is not None and x.dtype == torch.float32 and x.device.type == "cpu":
            by_step.setdefault(steps[i].item() + 1, []).append(i)
        else:
            rest.append(i)
    for t, indices in by_step.items():
        update = _cpu_kernel.bind_adam(native, coefficients(t, **hyperparameters))
        xs, gs, zs_, ms_, vs_ = ([tensors[i] for i in indices] for tensors in local)
        fused_on_cpu(update, xs, gs, [zs_, ms_, vs_], list(range(len(indices))), own_state)
        for i in indices:
            steps[i] += 1
    if rest:
        chosen = ([tensors[i] for i in rest] for tensors in (params, grads, zs, ms, vs, steps))
        _multi_tensor_adam_stacey(*chosen, **hyperparameters)
