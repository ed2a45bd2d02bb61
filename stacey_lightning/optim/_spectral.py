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

Newton-Schulz runs in bfloat16 on CUDA, as torch's Muon does, and in float32 (the parameter's precision, float32
at least) on the CPU. bfloat16 keeps 8 bits of each entry: a momentum whose singular values spread over decades (a
few large, many small, as gradients' are) loses its small ones, and msign of a matrix with singular values from 1
to 1e-6 comes out 12% off (float32: 1e-5; benchmarks/results/newton_schulz_cpu.md); the same configs trained worse
with it (textlm's winner 0.033 bpc on each of three seeds; benchmarks/results/step_speed_spectral_cpu_round10b.md).
``ns_dtype="bfloat16"`` gives torch's precision, and its speed on any shape.

What brings float32 to torch's bfloat16 time on a wide matrix is the Gram form: every iterate is X_k = P_k(A) X
with A = X X^T, so where cols >= GRAM_ASPECT * rows (of the wide form) the iterations run on the rows x rows
matrix A and X is multiplied once at the end, 17 rows^3 + 2 rows^2 cols flops against 5 (rows^3 + 2 rows^2 cols):
2.7x fewer at ResNet's 1:9 convolutions, 1.8x at a transformer's 1:4 MLP matrices, none at 1:1.5. On this
project's CPU that is 0.8x torch's time at 1:9, 1.07x at 1:4.5, 1.4x at 1:3; a square matrix keeps the direct
form, 1.8x-2.1x torch's. Its float32 error is 1e-4 (it squares the condition number once, in A), and the models
of the development half trained alike in both forms (benchmarks/results/step_speed_spectral_cpu_round11.md); it is
kept to float32 and wider, since in bfloat16 that squaring loses what is left. The iterations are written with
addmm, so that their scalings ride in the matmuls instead of passes of their own.

A parameter may stack several matrices along its first dimension: torch's recurrent layers keep their gates' maps
in one weight (nn.LSTM four, nn.GRU three), nn.MultiheadAttention its query, key and value projections. Measured as
those maps, each in its own spectral norm, the largest of them (max_i ||W_i||_2, the spectral norm of the
block-diagonal diag(W_1, ..., W_k)), the steepest direction decouples into msign of each block, each scaled by its
own shape (``blocks``; the l_p and Adam directions are elementwise and need no such thing). One block is the whole
matrix, as torch's Muon takes it (which blocks the mixin sets: lightning/param_groups.py).

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
    "ns_precision",
    "check_ns_dtype",
    "NS_DTYPES",
    "GRAM_ASPECT",
    "CPU_BATCH_SIDE",
]

NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)  # torch.optim.Muon's quintic (Keller Jordan's)
NS_STEPS = 5
# The RMS of d per unit lr: msign of an m x n matrix has RMS 1/sqrt(max(m, n)), times rms_scale's factor.
SPECTRAL_RMS = 0.2
_NORM_FLOOR = 1e-7  # torch.optim.Muon's eps: a zero momentum gives a zero direction, not nan
# The least cols / rows (of the wide form) from which the Gram form is taken: on this project's CPU, at 1 and 2
# threads, the two forms take the same time at 1.5 and the Gram form less from 2 (benchmarks/newton_schulz.py).
GRAM_ASPECT = 2.0
# The largest side of a stack's blocks that the CPU orthogonalises as one batch: at 64 and 128 a batch was 1.04x-2.7x
# faster than one block at a time, at 256 level (within 1.15x either way), at 512 and 768 up to 1.35x slower at 2
# threads (benchmarks/results/stacked_maps_cpu.md).
CPU_BATCH_SIDE = 128
# The precisions a group's ``ns_dtype`` may pin, by name (the name is what a param group and a checkpoint keep).
NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


def check_ns_dtype(name: object) -> None:
    """Raise a ValueError unless ``name`` is None or a name in NS_DTYPES."""
    if name is not None and name not in NS_DTYPES:
        raise ValueError(
            f"Invalid ns_dtype: {name!r} (choose one of {', '.join(NS_DTYPES)}, or None for bfloat16 on CUDA and "
            "float32 on the CPU)"
        )


def ns_precision(tensor: Tensor, pinned: str | None = None) -> torch.dtype:
    """The precision Newton-Schulz runs in for ``tensor``: ``pinned`` (a name in NS_DTYPES) if given; else
    bfloat16 on CUDA, float32 at least elsewhere."""
    if pinned is not None:
        check_ns_dtype(pinned)  # again here: a group edited after construction is not checked there
        return NS_DTYPES[pinned]
    if tensor.device.type == "cuda":
        return torch.bfloat16
    return torch.promote_types(tensor.dtype, torch.float32)


def rms_scale(shape: torch.Size | tuple[int, ...], blocks: int = 1) -> float:
    """0.2 * sqrt(max(rows, cols)) of the matrix view (shape[0], -1), or of each of its ``blocks`` blocks of rows:
    AdamW's update RMS."""
    rows = shape[0] // blocks
    cols = math.prod(shape[1:])
    return SPECTRAL_RMS * math.sqrt(max(rows, cols))


def newton_schulz(
    c: Tensor, steps: int = NS_STEPS, dtype: torch.dtype | None = None, scale: float = 1.0, gram: bool | None = None
) -> Tensor:
    """msign(c) * scale, approximately: ``steps`` quintic Newton-Schulz iterations on c / ||c||_F.

    ``c`` is a matrix (rows, cols) or a batch of them (batch, rows, cols), each orthogonalised on its own;
    the result has ``c``'s shape, in ``dtype`` (``c``'s own when None). ``scale`` rides in the last
    iteration's matmul (in the Gram form, in the small product before the last matmul). ``gram`` picks the form
    (None: the Gram form where it is faster and precise enough, ``_gram_pays``; False: the direct iteration,
    the reference).
    """
    x = c if dtype is None else c.to(dtype)
    transposed = x.shape[-2] > x.shape[-1]  # iterate on the wide form: the Gram matrix is the small one
    if transposed:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=_NORM_FLOOR)
    if steps > 0 and (_gram_pays(x) if gram is None else gram):
        x = _gram_newton_schulz(x, steps, scale)
    else:
        x = _direct_newton_schulz(x, steps, scale)
    return x.mT if transposed else x


def _gram_pays(x: Tensor) -> bool:
    """Whether the Gram form is faster for ``x`` (wide enough) and precise enough: float64, or float32 whose
    matmuls keep float32's mantissa on its device (TF32 or bfloat16 inside a float32 matmul would lose in A
    what bfloat16 loses)."""
    precise = x.dtype == torch.float64 or (x.dtype == torch.float32 and _float32_matmuls_exact(x.device.type))
    return precise and x.shape[-1] >= GRAM_ASPECT * x.shape[-2]


@torch.compiler.assume_constant_result  # a setting, not data: a compiled step reads it once, as a constant
def _float32_matmuls_exact(device_type: str) -> bool:
    """Whether float32 matmuls on ``device_type`` run in float32 (torch's "ieee"), by the device's own setting
    (``torch.backends.{cuda,mkldnn}.matmul.fp32_precision``, "none" deferring to ``torch.backends``'), which the
    legacy ``torch.set_float32_matmul_precision`` and ``allow_tf32`` set too. Read this way, not by
    ``torch.get_float32_matmul_precision()``: that raises once the new settings are used, and reads CUDA's TF32
    flag for the CPU."""
    backends = torch.backends
    if not hasattr(backends, "fp32_precision"):  # torch before 2.9: only the legacy, global setting
        return torch.get_float32_matmul_precision() == "highest"
    matmul = {"cuda": backends.cuda.matmul, "cpu": backends.mkldnn.matmul}.get(device_type)
    precision = "none" if matmul is None else matmul.fp32_precision
    if precision == "none":
        precision = backends.fp32_precision
    return precision in ("ieee", "none")


def _direct_newton_schulz(x: Tensor, steps: int, scale: float) -> Tensor:
    """The iteration as Muon writes it, on a normalised wide x: x <- a x + (b A + c A^2) x, A = x x^T."""
    a, b, c2 = NS_COEFFICIENTS
    addmm = torch.addmm if x.ndim == 2 else torch.baddbmm
    for step in range(steps):
        gram = x @ x.mT
        polynomial = addmm(gram, gram, gram, beta=b, alpha=c2)  # b * gram + c2 * gram @ gram
        last = scale if step == steps - 1 else 1.0
        x = addmm(x, polynomial, x, beta=a * last, alpha=last)  # a * x + polynomial @ x
    if steps == 0:
        x = x * scale
    return x


def _gram_newton_schulz(x: Tensor, steps: int, scale: float) -> Tensor:
    """The same iterates on the Gram matrix: x_k = Q_k x_{k-1} with Q_k = a I + b A_k + c A_k^2 and
    A_k = x_k x_k^T = Q_k A_{k-1} Q_k (Q_k is a polynomial in A_{k-1}), so x_steps = (Q_steps ... Q_1) x and
    the wide x is multiplied twice, not twice per iteration."""
    a, b, c2 = NS_COEFFICIENTS
    addmm = torch.addmm if x.ndim == 2 else torch.baddbmm
    gram = x @ x.mT
    product = None  # Q_k ... Q_1
    for step in range(steps):
        q = addmm(gram, gram, gram, beta=b, alpha=c2)
        q.diagonal(dim1=-2, dim2=-1).add_(a)
        product = q if product is None else q @ product
        if step < steps - 1:
            gram = q @ gram @ q
    return product.mul_(scale) @ x


def spectral_direction(
    c: Tensor,
    steps: int = NS_STEPS,
    pinned: str | None = None,
    *,
    cast: bool = True,
    gram: bool | None = None,
    blocks: int = 1,
    batched: bool | None = None,
) -> Tensor:
    """d = NS(c) * 0.2 * sqrt(max(rows, cols)) for c viewed as (shape[0], -1), in c's shape; Newton-Schulz in
    ns_precision(c, pinned) and in the form ``gram`` picks (newton_schulz), the result in c's dtype (in
    Newton-Schulz's with ``cast=False``). With ``blocks`` > 1 the view's rows are that many matrices, each
    orthogonalised and scaled on its own: as one batch (``batched``; by default off the CPU and for small blocks
    on it), or one block at a time (by default on the CPU from blocks of more than ``CPU_BATCH_SIDE`` rows or
    columns)."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1 or c.shape[0] % blocks:
        raise ValueError(f"Invalid blocks: {blocks!r} for a matrix of {c.shape[0]} rows (they must split evenly)")
    matrix = c.reshape(c.shape[0], -1)
    dtype, scale = ns_precision(c, pinned), rms_scale(c.shape, blocks)
    if batched is None:
        batched = c.device.type != "cpu" or max(c.shape[0] // blocks, matrix.shape[1]) <= CPU_BATCH_SIDE
    if blocks == 1:
        d = newton_schulz(matrix, steps, dtype, scale, gram)
    elif batched:
        d = newton_schulz(matrix.reshape(blocks, -1, matrix.shape[1]), steps, dtype, scale, gram)
    else:
        d = torch.cat([newton_schulz(block, steps, dtype, scale, gram) for block in matrix.split(c.shape[0] // blocks)])
    # reshape, not view: a tall matrix's direction comes back transposed (newton_schulz iterates on the wide form)
    return (d.to(c.dtype) if cast else d).reshape(c.shape)


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
    ns_dtype: str | None = None,
    blocks: list[int] | None = None,
    maximize: bool = False,
    foreach: bool | None = None,
) -> None:
    """Functional spectral Stacey step over lists of matrices (updated in place): the multi-tensor path,
    or the plain loop where ``foreach=False``. ``blocks``: the matrices each parameter stacks (None: one each)."""
    step = _single_tensor_spectral_stacey if foreach is False else _multi_tensor_spectral_stacey
    blocks = [1] * len(params) if blocks is None else list(blocks)
    if len(blocks) != len(params):
        raise ValueError(f"Invalid blocks: a list of {len(blocks)} for {len(params)} parameters (one count for each)")
    step(params, grads, zs, ms, lr=lr, alpha=alpha, tau=tau, beta1=beta1, beta2=beta2, weight_decay=weight_decay,
         ns_steps=ns_steps, ns_dtype=ns_dtype, blocks=blocks, maximize=maximize)  # fmt: skip


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
    ns_dtype: str | None,
    blocks: list[int],
    maximize: bool,
) -> None:
    """The plain loop, the oracle of the fast path (tests run it with ``ns_dtype="float64"``)."""
    for x, g, z, m, k in zip(params, grads, zs, ms, blocks):
        if maximize:
            g = -g
        c = beta1 * m + (1 - beta1) * g  # m from before this step
        z.copy_(z - alpha * c)
        y = x - lr * _gathered_direction(c, ns_steps, ns_dtype, gram=False, blocks=k)  # Muon's own iteration
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
    ns_dtype: str | None,
    blocks: list[int],
    maximize: bool,
) -> None:
    """The same step with the elementwise parts in multi-tensor kernels and the matrices of one shape
    orthogonalised as one batch (one matmul per iteration instead of one per matrix)."""
    # Elementwise work on the shards this process holds; a sharded matrix's direction is gathered whole.
    layout_and_blocks = {id(x): (_layout(x), k) for x, k in zip(params, blocks)}
    local = [local_shards(tensors) for tensors in (params, grads, zs, ms)]
    of_shard = {id(x_local): layout_and_blocks[id(x)] for x, x_local in zip(params, local[0])}
    for xs, gs, zs_, ms_ in group_by_device_and_dtype(*local):
        if maximize:
            gs = torch._foreach_neg(gs)
        c = torch._foreach_mul(ms_, beta1)
        torch._foreach_add_(c, gs, alpha=1 - beta1)
        torch._foreach_add_(zs_, c, alpha=-alpha)
        layouts, counts = zip(*(of_shard[id(x)] for x in xs))
        d = _directions(c, list(layouts), list(counts), ns_steps, ns_dtype)
        _foreach_primal_and_momentum(
            xs, zs_, ms_, gs, d, lr=lr, tau=tau, weight_decay=weight_decay, beta2=beta2, scratch=c
        )


def _directions(
    cs: list[Tensor], layouts: list[tuple | None], blocks: list[int], ns_steps: int, pinned: str | None
) -> list[Tensor]:
    """spectral_direction of each c (a local shard where its layout says the parameter is sharded), of its
    ``blocks`` blocks. On an accelerator the unsharded blocks of equal shape are stacked into batches, one
    matmul per iteration instead of one per matrix. On the CPU each is taken alone: there batched matmuls were
    slower than single ones (ResNet-18's matrices, 1 and 2 threads, bfloat16 and float32:
    benchmarks/results/step_speed_spectral_cpu_round10.md)."""
    directions: list[Tensor | None] = [None] * len(cs)
    by_block: dict[tuple[int, int], list[int]] = {}
    for index, (c, layout, k) in enumerate(zip(cs, layouts, blocks)):
        if layout is not None:
            directions[index] = _gathered_direction(_as_dtensor(c, layout), ns_steps, pinned, blocks=k).to_local()
        elif c.device.type == "cpu":
            # Left in Newton-Schulz's precision: the multi-tensor update reads bfloat16 as it is, and a
            # cast would cost a model-sized allocation.
            directions[index] = spectral_direction(c, ns_steps, pinned, cast=False, blocks=k)
        else:
            # One batch per block shape: attention's q, k, v (d x d each) join its d x d output projection.
            by_block.setdefault((c.shape[0] // k, math.prod(c.shape[1:])), []).append(index)
    for indices in by_block.values():
        chosen = [cs[i] for i in indices]
        for i, d in zip(indices, _batched_directions(chosen, [blocks[i] for i in indices], ns_steps, pinned)):
            directions[i] = d
    return directions


def _batched_directions(cs: list[Tensor], blocks: list[int], ns_steps: int, pinned: str | None) -> list[Tensor]:
    """spectral_direction of each c, its blocks (all of one shape, and so of one scale) orthogonalised as one
    batch: one matmul per iteration instead of one per matrix, in each c's dtype."""
    first = cs[0]
    block = (first.shape[0] // blocks[0], math.prod(first.shape[1:]))
    # Each block is copied into the batch in Newton-Schulz's precision: one pass, not a stack and a cast.
    batch = first.new_empty((sum(blocks), *block), dtype=ns_precision(first, pinned))
    for matrices, c, k in zip(batch.split(blocks), cs, blocks):
        matrices.copy_(c.reshape(k, *block))
    d = newton_schulz(batch, ns_steps, scale=rms_scale(block))
    # reshape, not view: a tall block's direction comes back transposed (newton_schulz iterates on the wide form)
    return [matrices.reshape(c.shape).to(c.dtype) for matrices, c in zip(d.split(blocks), cs)]


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


def _gathered_direction(
    c: Tensor, ns_steps: int, pinned: str | None, gram: bool | None = None, blocks: int = 1
) -> Tensor:
    """spectral_direction(c); for a sharded DTensor the whole matrix's direction, of which the result
    holds this process's part (a DTensor like c)."""
    if not _is_dtensor(c):
        return spectral_direction(c, ns_steps, pinned, gram=gram, blocks=blocks)
    from torch.distributed.tensor import distribute_tensor

    whole = spectral_direction(c.full_tensor(), ns_steps, pinned, gram=gram, blocks=blocks)
    # src_data_rank=None: every process holds the same whole direction, so each keeps its own part
    # without a scatter.
    return distribute_tensor(whole, c.device_mesh, c.placements, src_data_rank=None)
