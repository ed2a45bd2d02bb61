"""Stacey in the spectral norm: the primal direction of a matrix parameter is msign(c), Muon's geometry.

Steepest descent under the spectral norm ||W||_2 moves along msign(c) = U V^T for c = U S V^T: every
singular value set to one. Five Newton-Schulz iterations with torch.optim.Muon's quintic compute it
without an SVD, to singular values in roughly [0.7, 1.2] (what Muon uses). The direction is scaled by
0.2 * sqrt(max(rows, cols)) so that the update's RMS matches AdamW's (torch's ``match_rms_adamw``):
lr then means what it means for AdamW. A parameter of more than two dimensions (a convolution) is
viewed as (shape[0], -1).

Stacey's coupling does not depend on the norm: the step is the "p2" variant's with d in place of s(c)::

    c = beta1 * m + (1 - beta1) * g
    z = z - alpha * c
    x = tau * z + (1 - tau) * (x - lr * d) - lr * weight_decay * x
    m = beta2 * m + (1 - beta2) * g

With tau = 0, betas = (mu^2, mu) it is torch.optim.Muon(momentum=mu, nesterov=True,
adjust_lr_fn="match_rms_adamw") (docs/algorithm.md derives it; tests/optim/test_spectral.py checks it).

Newton-Schulz runs in bfloat16 on CUDA, as torch's Muon does, and in the parameter's precision (float32
at least) on the CPU, where bfloat16 matmuls were slower than float32 ones on the machine that chose it; on a
CPU with AVX512-BF16 they are 2.4x faster, and there this step costs 2.4x-2.9x torch's Muon
(benchmarks/results/step_speed_spectral_cpu_round9.md).

Parameters sharded by FSDP2 are DTensors split by rows: the direction needs the whole matrix, so each
process gathers c (``full_tensor``), computes the direction and keeps its own rows. Every process
computes the same direction: the sharded run equals one process.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

from stacey_lightning.optim._functional import _foreach_primal_and_momentum, group_by_device_and_dtype
from stacey_lightning.optim._fused import local_shards

__all__ = [
    "NS_COEFFICIENTS",
    "NS_STEPS",
    "SPECTRAL_RMS",
    "newton_schulz",
    "spectral_direction",
    "spectral_stacey",
    "rms_scale",
    "ns_dtype",
]

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # torch.optim.Muon's quintic (Keller Jordan's)
NS_STEPS = 5
# The RMS of d per unit lr: msign of an m x n matrix has RMS 1/sqrt(max(m, n)), times rms_scale's factor.
SPECTRAL_RMS = 0.2
_NORM_FLOOR = 1e-7  # torch.optim.Muon's eps: a zero momentum gives a zero direction, not nan


def ns_dtype(tensor: Tensor) -> torch.dtype:
    """The precision Newton-Schulz runs in for ``tensor``: bfloat16 on CUDA, else float32 at least."""
    if tensor.device.type == "cuda":
        return torch.bfloat16
    return torch.promote_types(tensor.dtype, torch.float32)


def rms_scale(shape: torch.Size) -> float:
    """0.2 * sqrt(max(rows, cols)) of the matrix view (shape[0], -1): AdamW's update RMS."""
    rows = shape[0]
    cols = math.prod(shape[1:])
    return SPECTRAL_RMS * math.sqrt(max(rows, cols))


def newton_schulz(c: Tensor, steps: int = NS_STEPS, dtype: torch.dtype | None = None) -> Tensor:
    """msign(c), approximately: ``steps`` quintic Newton-Schulz iterations on c / ||c||_F.

    ``c`` is a matrix or a batch of matrices (..., rows, cols), each orthogonalised on its own; the
    result has ``c``'s shape, in ``dtype`` (``c``'s own when None).
    """
    a, b, c2 = NS_COEFFICIENTS
    x = c if dtype is None else c.to(dtype)
    transposed = x.shape[-2] > x.shape[-1]  # iterate on the wide form: the Gram matrix is the small one
    if transposed:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=_NORM_FLOOR)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c2 * gram @ gram) @ x
    return x.mT if transposed else x


def spectral_direction(c: Tensor, steps: int = NS_STEPS, dtype: torch.dtype | None = None) -> Tensor:
    """d = NS(c) * 0.2 * sqrt(max(rows, cols)) for c viewed as (shape[0], -1), in c's shape and dtype."""
    matrix = c.reshape(c.shape[0], -1)
    d = newton_schulz(matrix, steps, ns_dtype(c) if dtype is None else dtype)
    return (d.to(c.dtype) * rms_scale(c.shape)).view_as(c)


def spectral_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    lr: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    ns_steps: int,
    maximize: bool = False,
    foreach: bool | None = None,
) -> None:
    """Functional spectral Stacey step over lists of matrices (updated in place): the multi-tensor path,
    or the plain loop where ``foreach=False``."""
    step = _single_tensor_spectral_stacey if foreach is False else _multi_tensor_spectral_stacey
    step(params, grads, zs, ms, lr=lr, alpha=alpha, tau=tau, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
         ns_steps=ns_steps, maximize=maximize)  # fmt: skip


def _single_tensor_spectral_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    lr: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    ns_steps: int,
    maximize: bool,
    ns_dtype: torch.dtype | None = None,
) -> None:
    """The plain loop, the oracle of the fast path; ``ns_dtype`` overrides Newton-Schulz's precision
    (tests run it in float64)."""
    for x, g, z, m in zip(params, grads, zs, ms):
        if maximize:
            g = -g
        c = beta1 * m + (1 - beta1) * g  # m from before this step
        z.copy_(z - alpha * c)
        y = x - lr * _gathered_direction(c, ns_steps, ns_dtype)
        # tau * z + (1 - tau) * y, exactly y where z == y (see _functional's notes on exact resume)
        x.copy_(y + tau * (z - y) - lr * weight_decay * x)
        m.copy_(beta2 * m + (1 - beta2) * g)


def _multi_tensor_spectral_stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    lr: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    ns_steps: int,
    maximize: bool,
) -> None:
    """The same step with the elementwise parts in multi-tensor kernels and the matrices of one shape
    orthogonalised as one batch (one matmul per iteration instead of one per matrix)."""
    # Elementwise work on the shards this process holds; a sharded matrix's direction is gathered whole.
    layouts = {id(x): _layout(x) for x in params}
    local = [local_shards(tensors) for tensors in (params, grads, zs, ms)]
    shard_layout = {id(x_local): layouts[id(x)] for x, x_local in zip(params, local[0])}
    for xs, gs, zs_, ms_ in group_by_device_and_dtype(*local):
        if maximize:
            gs = torch._foreach_neg(gs)
        c = torch._foreach_mul(ms_, beta1)
        torch._foreach_add_(c, gs, alpha=1 - beta1)
        torch._foreach_add_(zs_, c, alpha=-alpha)
        d = _batched_directions(c, [shard_layout[id(x)] for x in xs], ns_steps)
        _foreach_primal_and_momentum(xs, zs_, ms_, gs, d, lr=lr, tau=tau, weight_decay=weight_decay, beta2=beta2)


def _batched_directions(cs: list[Tensor], layouts: list[tuple | None], ns_steps: int) -> list[Tensor]:
    """spectral_direction of each c (a local shard where its layout says the parameter is sharded),
    stacking the unsharded ones of equal shape into batches."""
    directions: list[Tensor | None] = [None] * len(cs)
    by_shape: dict[torch.Size, list[int]] = {}
    for index, (c, layout) in enumerate(zip(cs, layouts)):
        if layout is not None:
            directions[index] = _gathered_direction(_as_dtensor(c, layout), ns_steps, None).to_local()
        else:
            by_shape.setdefault(c.shape, []).append(index)
    for shape, indices in by_shape.items():
        batch = torch.stack([cs[i].reshape(shape[0], -1) for i in indices])
        d = newton_schulz(batch, ns_steps, ns_dtype(batch)).to(batch.dtype) * rms_scale(shape)
        for i, matrix in zip(indices, d.unbind()):
            directions[i] = matrix.view(shape)
    return directions


def _layout(t: Tensor) -> tuple | None:
    """(mesh, placements, shape, stride) of a DTensor, None for a plain tensor."""
    if not _is_dtensor(t):
        return None
    return (t.device_mesh, t.placements, t.shape, t.stride())


def _as_dtensor(local: Tensor, layout: tuple) -> Tensor:
    from torch.distributed.tensor import DTensor

    mesh, placements, shape, stride = layout
    return DTensor.from_local(local, mesh, placements, run_check=False, shape=shape, stride=stride)


def _is_dtensor(t: Tensor) -> bool:
    # DTensors exist only once torch.distributed.tensor is imported (by FSDP2): no import cost otherwise.
    dtensor = sys.modules.get("torch.distributed.tensor")
    return dtensor is not None and isinstance(t, dtensor.DTensor)


def _gathered_direction(c: Tensor, ns_steps: int, dtype: torch.dtype | None) -> Tensor:
    """spectral_direction(c); for a sharded DTensor the whole matrix's direction, of which the result
    holds this process's part (a DTensor like c)."""
    if not _is_dtensor(c):
        return spectral_direction(c, ns_steps, dtype)
    from torch.distributed.tensor import distribute_tensor

    whole = spectral_direction(c.full_tensor(), ns_steps, dtype)
    # src_data_rank=None: every process holds the same whole direction, so each keeps its own part
    # without a scatter.
    return distribute_tensor(whole, c.device_mesh, c.placements, src_data_rank=None)
