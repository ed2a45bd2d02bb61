"""The Stacey update as pure functions, one per implementation, in torch.optim's layout.

``_single_tensor_stacey`` reads like docs/algorithm.md and is the oracle: every other path must produce
what it produces (tests/optim/test_functional.py steps them side by side). ``_multi_tensor_stacey`` is
the same update in multi-tensor (foreach) kernels; the compiled single-pass path lives in ``_fused``,
and ``optimizer.stacey`` picks a path.

Notation (docs/algorithm.md): x parameter, g gradient, z dual iterate, m momentum, c interpolated
momentum, s(c) the l_p steepest-descent direction, lr = eta (primal step), alpha dual step,
tau interpolation coefficient.

Every path computes the interpolation tau * z + (1 - tau) * y as y + tau * (z - y) (and the whole
step as (1 - lr * lambda) * x + tau * (z - x) - (1 - tau) * lr * s(c)): the same update, but exactly
x where z == x and the step is zero. torch.distributed.checkpoint relies on that: before it loads an
optimizer's state it calls step() once with zero gradients and lr = 0 (so alpha = 0), and the form
tau * z + (1 - tau) * x would move every weight by a rounding error, breaking exact resume.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "lp_direction",
    "direction",
    "direction_kind",
    "direction_exponent",
    "signed_power",
    "group_by_device_and_dtype",
]


def direction_kind(p: float) -> str:
    """Which exact form of s(c) applies: no power at p = 2, rsqrt at p = 3, a division at p = inf,
    the general power otherwise."""
    if p == math.inf:
        return "sign"
    if p == 2:
        return "identity"
    if p == 3:
        return "rsqrt"
    return "power"


def direction_exponent(p: float) -> float:
    """(2 - p) / (p - 1), the exponent of (|c| + eps) in s(c); -1 at p = inf."""
    return -1.0 if p == math.inf else (2 - p) / (p - 1)


def direction(
    c: Tensor, kind: str, exponent: float | Tensor, eps: float | Tensor, power: Callable = torch.pow
) -> Tensor:
    """s(c) = c * (|c| + eps) ** exponent, exponent = (2 - p) / (p - 1), in the exact form ``kind`` names.

    Roughly sign(c) * |c| ** (1 / (p - 1)); eps sits inside the power's base so that p > 2 cannot
    blow up a zero coordinate. ``power(base, exponent)`` computes the general power (the compiled
    path passes one that keeps p symbolic).
    """
    if kind == "identity":  # (|c| + eps) ** 0 == 1
        return c
    if kind == "rsqrt":
        return c * torch.rsqrt(c.abs() + eps)
    if kind == "sign":  # the limit p -> inf
        return c / (c.abs() + eps)
    return c * power(c.abs() + eps, exponent)


def lp_direction(c: Tensor, p: float, eps: float) -> Tensor:
    """s(c) by the paper's formula: the general power for finite p, c / (|c| + eps) at p = inf."""
    return direction(c, "sign" if p == math.inf else "power", direction_exponent(p), eps)


def signed_power(t: Tensor, exponent: float, power: Callable = torch.pow) -> Tensor:
    """sign(t) * |t| ** exponent. Equal to |t| ** (exponent - 1) * t, but finite at t = 0 for
    exponents below 1 (p < 2 in the "pp" mirror map)."""
    return t.sign() * power(t.abs(), exponent)


def _single_tensor_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    lr: float,
    p: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
    variant: str,
    maximize: bool,
) -> None:
    for x, g, z, m in zip(params, grads, zs, ms):
        if maximize:
            g = -g
        c = beta1 * m + (1 - beta1) * g  # m from before this step
        if variant == "p2":
            z.copy_(z - alpha * c)
        elif alpha != 0:  # "pp": mirror descent with (1/p)||.||_p^p (a zero step leaves z as it is)
            u = signed_power(z, p - 1) - alpha * c
            z.copy_(signed_power(u, 1 / (p - 1)))
        y = x - lr * lp_direction(c, p, eps)
        # tau * z + (1 - tau) * y, written so that it is exactly y where z == y (see _functional's notes)
        x.copy_(y + tau * (z - y) - lr * weight_decay * x)
        m.copy_(beta2 * m + (1 - beta2) * g)


def group_by_device_and_dtype(*tensor_lists: list[Tensor]) -> list[tuple[list[Tensor], ...]]:
    """The lists split into buckets of one device and dtype each (multi-tensor kernels need that)."""
    groups: dict[tuple, tuple[list[Tensor], ...]] = defaultdict(lambda: tuple([] for _ in tensor_lists))
    for tensors in zip(*tensor_lists):
        bucket = groups[(tensors[0].device, tensors[0].dtype)]
        for lst, t in zip(bucket, tensors):
            lst.append(t)
    return list(groups.values())


def _multi_tensor_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    lr: float,
    p: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
    variant: str,
    maximize: bool,
) -> None:
    kind = direction_kind(p)
    for xs, gs, zs_, ms_ in group_by_device_and_dtype(params, grads, zs, ms):
        if maximize:
            gs = torch._foreach_neg(gs)
        c = torch._foreach_mul(ms_, beta1)
        torch._foreach_add_(c, gs, alpha=1 - beta1)
        if variant == "p2":
            torch._foreach_add_(zs_, c, alpha=-alpha)
        elif alpha != 0:
            u = torch._foreach_abs(zs_)
            torch._foreach_pow_(u, p - 1)
            torch._foreach_mul_(u, torch._foreach_sign(zs_))
            torch._foreach_add_(u, c, alpha=-alpha)
            new_z = torch._foreach_abs(u)
            torch._foreach_pow_(new_z, 1 / (p - 1))
            torch._foreach_mul_(new_z, torch._foreach_sign(u))
            torch._foreach_copy_(zs_, new_z)
        if kind == "identity":
            s = c
        else:
            base = torch._foreach_abs(c)
            torch._foreach_add_(base, eps)
            if kind == "rsqrt":
                torch._foreach_sqrt_(base)
                s = torch._foreach_div(c, base)
            elif kind == "sign":
                s = torch._foreach_div(c, base)
            else:
                torch._foreach_pow_(base, (2 - p) / (p - 1))
                s = torch._foreach_mul(c, base)
        _foreach_primal_and_momentum(xs, zs_, ms_, gs, s, lr=lr, tau=tau, weight_decay=weight_decay, beta2=beta2)


def _foreach_primal_and_momentum(
    xs: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    gs: list[Tensor],
    directions: list[Tensor],
    *,
    lr: float,
    tau: float,
    weight_decay: float,
    beta2: float,
    scratch: list[Tensor] | None = None,
) -> None:
    """The end of every multi-tensor step, whatever the norm gave the direction d:
    x = (1 - lr * weight_decay) * x + tau * (z - x) - (1 - tau) * lr * d, then m = beta2 * m + (1 - beta2) * g.

    ``scratch``, tensors like x the caller no longer needs, receives z - x: on the CPU a new tensor the
    size of the model costs page faults worth several passes over it (23 ms against 3 for ResNet-18's
    11.7M parameters). Without tau (Muon, Lion) there is no pull to compute."""
    if tau != 0:
        if scratch is None:
            pull = torch._foreach_sub(zs, xs)
        else:
            torch._foreach_copy_(scratch, zs)
            torch._foreach_sub_(scratch, xs)
            pull = scratch
    torch._foreach_mul_(xs, 1 - lr * weight_decay)
    if tau != 0:
        torch._foreach_add_(xs, pull, alpha=tau)
    torch._foreach_add_(xs, directions, alpha=-(1 - tau) * lr)
    torch._foreach_mul_(ms, beta2)
    torch._foreach_add_(ms, gs, alpha=1 - beta2)
