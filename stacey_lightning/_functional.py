"""The Stacey update as pure functions, one per implementation, in torch.optim's layout.

``_single_tensor_stacey`` reads like ALGORITHM.md and is the oracle: every other path must produce
what it produces (tests/test_functional.py steps them side by side). ``stacey`` picks a path.

Notation (ALGORITHM.md): x parameter, g gradient, z dual iterate, m momentum, c interpolated
momentum, s(c) the l_p steepest-descent direction, lr = eta (primal step), alpha dual step,
tau interpolation coefficient.
"""

from __future__ import annotations

import math
import types
import warnings
from collections import defaultdict
from typing import Callable

import torch
from torch import Tensor

__all__ = ["stacey", "lp_direction", "direction_kind"]


def lp_direction(c: Tensor, p: float, eps: float) -> Tensor:
    """s(c) = c * (|c| + eps) ** ((2 - p) / (p - 1)), and its limit c / (|c| + eps) at p = inf.

    Roughly sign(c) * |c| ** (1 / (p - 1)); eps sits inside the power's base so that p > 2 cannot
    blow up a zero coordinate.
    """
    if p == math.inf:
        return c / (c.abs() + eps)
    return c * (c.abs() + eps).pow((2 - p) / (p - 1))


def direction_kind(p: float) -> str:
    """Which exact cheaper form of s(c) applies: no power at p = 2, rsqrt at p = 3, a division at
    p = inf, the general power otherwise."""
    if p == math.inf:
        return "sign"
    if p == 2:
        return "identity"
    if p == 3:
        return "rsqrt"
    return "power"


def _fast_direction(c: Tensor, kind: str, p: float, eps: float, power: Callable = torch.pow) -> Tensor:
    if kind == "identity":  # (|c| + eps) ** 0 == 1
        return c
    if kind == "rsqrt":
        return c * torch.rsqrt(c.abs() + eps)
    if kind == "sign":
        return c / (c.abs() + eps)
    return c * power(c.abs() + eps, (2 - p) / (p - 1))


def _signed_power(t: Tensor, exponent: float, power: Callable = torch.pow) -> Tensor:
    """sign(t) * |t| ** exponent. Equal to |t| ** (exponent - 1) * t, but finite at t = 0 for
    exponents below 1 (p < 2 in the "pp" mirror map)."""
    return t.sign() * power(t.abs(), exponent)


def _symbolic_power(base: Tensor, exponent: float) -> Tensor:
    """base ** exponent for base >= 0, as exp(exponent * log(base)). Inside a compiled kernel a
    Python-float exponent of pow is specialised into the graph (one recompile per p); a product
    with it stays symbolic. log(0) = -inf gives exp(-inf) = 0 for the positive exponents used."""
    return torch.exp(exponent * torch.log(base))


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
        else:  # "pp": mirror descent with (1/p)||.||_p^p
            u = _signed_power(z, p - 1) - alpha * c
            z.copy_(_signed_power(u, 1 / (p - 1)))
        y = x - lr * lp_direction(c, p, eps)
        x.copy_(tau * z + (1 - tau) * y - lr * weight_decay * x)
        m.copy_(beta2 * m + (1 - beta2) * g)


def _group_by_device_and_dtype(*tensor_lists: list[Tensor]) -> list[tuple[list[Tensor], ...]]:
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
    for xs, gs, zs_, ms_ in _group_by_device_and_dtype(params, grads, zs, ms):
        if maximize:
            gs = torch._foreach_neg(gs)
        c = torch._foreach_mul(ms_, beta1)
        torch._foreach_add_(c, gs, alpha=1 - beta1)
        if variant == "p2":
            torch._foreach_add_(zs_, c, alpha=-alpha)
        else:
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
        # x_new = (1 - tau - lr * weight_decay) * x + tau * z - (1 - tau) * lr * s(c)
        torch._foreach_mul_(xs, 1 - tau - lr * weight_decay)
        torch._foreach_add_(xs, zs_, alpha=tau)
        torch._foreach_add_(xs, s, alpha=-(1 - tau) * lr)
        torch._foreach_mul_(ms_, beta2)
        torch._foreach_add_(ms_, gs, alpha=1 - beta2)


# ---------------------------------------------------------------------------------------------
# Fused path: the whole update of one tensor as a single compiled elementwise pass over x, g, z, m
# (four reads, three writes: the memory floor). Hyperparameters are graph inputs (0-d tensors),
# never constants, so schedulers and tuning studies that change them never recompile. On the CPU, tensors are flattened to 1-D and
# compiled with dynamic sizes, so one kernel per (variant, direction kind, dtype) serves every model.


def _fused_kernel_body(variant: str, kind: str) -> Callable:
    def kernel(x, g, z, m, lr, p, alpha, tau, beta1, beta2, weight_decay, eps, grad_sign):
        g = g * grad_sign
        c = beta1 * m + (1 - beta1) * g
        if variant == "p2":
            z_new = z - alpha * c
        else:
            u = _signed_power(z, p - 1, _symbolic_power) - alpha * c
            z_new = _signed_power(u, 1 / (p - 1), _symbolic_power)
        s = _fast_direction(c, kind, p, eps, _symbolic_power)
        x.copy_((1 - tau - lr * weight_decay) * x + tau * z_new - (1 - tau) * lr * s)
        z.copy_(z_new)
        m.copy_(beta2 * m + (1 - beta2) * g)

    return _own_code(kernel, f"stacey_{variant}_{kind}")


def _own_code(function: Callable, name: str) -> Callable:
    """``function`` with a code object of its own. dynamo caches compiled graphs per code object,
    with a small recompile limit: closures made by one factory would share one budget."""
    return types.FunctionType(function.__code__.replace(co_name=name), function.__globals__, name,
                              function.__defaults__, function.__closure__)


_compiled_kernels: dict[tuple, Callable] = {}
_fused_disabled_reason: str | None = None

# On CUDA, launching one kernel per tensor from Python costs more than the update itself, so the
# whole list is compiled at once (static shapes: one compile per model) and inductor's combo
# kernels update many tensors per launch.
CUDA_COMPILE_OPTIONS = {"combo_kernels": True}


def fused_supported() -> bool:
    """Whether the compiled path can run here (dynamo supports this Python and it has not failed)."""
    return _fused_disabled_reason is None and torch._dynamo.is_dynamo_supported()


def _compiled_kernel(variant: str, kind: str) -> Callable:
    key = ("tensor", variant, kind)
    if key not in _compiled_kernels:
        _compiled_kernels[key] = torch.compile(_fused_kernel_body(variant, kind), dynamic=True, fullgraph=True)
    return _compiled_kernels[key]


def _compiled_list_kernel(variant: str, kind: str) -> Callable:
    key = ("list", variant, kind)
    if key not in _compiled_kernels:
        body = _fused_kernel_body(variant, kind)

        def list_kernel(xs, gs, zs, ms, *hyperparameters):
            for x, g, z, m in zip(xs, gs, zs, ms):
                body(x, g, z, m, *hyperparameters)

        _compiled_kernels[key] = torch.compile(_own_code(list_kernel, f"stacey_list_{variant}_{kind}"),
                                               dynamic=False, fullgraph=True, options=CUDA_COMPILE_OPTIONS)
    return _compiled_kernels[key]


def _disable_fused(error: Exception) -> None:
    global _fused_disabled_reason
    _fused_disabled_reason = f"{type(error).__name__}: {error}"
    warnings.warn(
        "Stacey could not compile its fused step and falls back to the foreach path for the rest "
        f"of this process (pass foreach=True to silence this). Reason: {_fused_disabled_reason}",
        RuntimeWarning,
        stacklevel=4,
    )


_recompile_limit_warned = False


def _warn_recompile_limit_once(error: Exception) -> None:
    global _recompile_limit_warned
    if _recompile_limit_warned:
        return
    _recompile_limit_warned = True
    warnings.warn("Stacey's fused step reached torch.compile's recompile limit for new parameter lists; those "
                  f"lists take the foreach path (raise torch._dynamo.config.recompile_limit to avoid it). {error}",
                  RuntimeWarning, stacklevel=4)


def _fused_stacey(
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
    hyper = dict(lr=lr, p=p, alpha=alpha, tau=tau, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps)
    kind = direction_kind(p)
    scalars = (lr, p, alpha, tau, beta1, beta2, weight_decay, eps, -1.0 if maximize else 1.0)
    for xs, gs, zs_, ms_ in _group_by_device_and_dtype(params, grads, zs, ms):
        if not fused_supported():
            _multi_tensor_stacey(xs, gs, zs_, ms_, variant=variant, maximize=maximize, **hyper)
            continue
        pending = list(range(len(xs)))  # tensors not yet updated, for the fallback below
        # Hyperparameters as 0-d tensors, made once per step. As Python floats, arithmetic between
        # them (lr * weight_decay) would be specialised into the graph (a recompile per value), and
        # each of the many CPU kernel calls would turn every float into a tensor itself. The copy
        # to the device is asynchronous: no host synchronisation.
        scalar_tensors = torch.tensor(scalars, dtype=torch.float64).to(xs[0].device, non_blocking=True).unbind()
        try:
            if xs[0].device.type == "cuda":
                _compiled_list_kernel(variant, kind)(xs, gs, zs_, ms_, *scalar_tensors)
            else:
                _fused_on_cpu(_compiled_kernel(variant, kind), xs, gs, zs_, ms_, scalar_tensors, pending)
        except (torch._dynamo.exc.BackendCompilerFailed, torch._dynamo.exc.FailOnRecompileLimitHit) as error:
            # Compiling is impossible here (no C++ compiler, unsupported platform), or, on CUDA,
            # this process has compiled too many parameter lists (one per group and model). Both
            # fail before the kernel runs, so the pending tensors are untouched.
            if isinstance(error, torch._dynamo.exc.BackendCompilerFailed):
                _disable_fused(error)
            else:
                _warn_recompile_limit_once(error)
            _multi_tensor_stacey([xs[i] for i in pending], [gs[i] for i in pending], [zs_[i] for i in pending],
                                 [ms_[i] for i in pending], variant=variant, maximize=maximize, **hyper)


# A kernel call costs tens of microseconds (guards, wrappers, starting the threads) whatever the
# tensor's size: below this many elements, tensors are packed into one flat call instead.
SMALL_TENSOR_NUMEL = 1 << 16


def _fused_on_cpu(kernel, xs, gs, zs, ms, scalars, pending: list[int]) -> None:
    small = [i for i in pending if xs[i].numel() < SMALL_TENSOR_NUMEL]
    if small:
        flat = [torch.cat([t[i].reshape(-1) for i in small]) for t in (xs, gs, zs, ms)]
        kernel(*flat, *scalars)
        sizes = [xs[i].numel() for i in small]
        for tensors, packed in ((xs, flat[0]), (zs, flat[2]), (ms, flat[3])):
            torch._foreach_copy_([tensors[i] for i in small],
                                 [part.view_as(tensors[i]) for i, part in zip(small, packed.split(sizes))])
        pending[:] = [i for i in pending if i not in set(small)]
    for i in list(pending):
        x = xs[i]
        # z and m are created contiguous; x and g can be any view: use a contiguous copy then.
        x_flat = x.view(-1) if x.is_contiguous() else x.contiguous().view(-1)
        kernel(x_flat, gs[i].reshape(-1), zs[i].view(-1), ms[i].view(-1), *scalars)
        if x_flat.data_ptr() != x.data_ptr():
            x.copy_(x_flat.view_as(x))
        pending.remove(i)


def stacey(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    ms: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    **hyperparameters,
) -> None:
    """Functional Stacey step over lists of tensors (updated in place); see ``Stacey``.

    Path: ``fused`` (compiled, the default where torch.compile works), else ``foreach``
    (multi-tensor kernels) unless ``foreach=False`` asks for the plain per-tensor loop.
    """
    if fused and foreach:
        raise ValueError("Stacey: fused=True and foreach=True are mutually exclusive; choose one")
    if fused is None and foreach is None:
        fused = _fused_by_default(params)
    if fused:
        _fused_stacey(params, grads, zs, ms, **hyperparameters)
    elif foreach is False:
        _single_tensor_stacey(params, grads, zs, ms, **hyperparameters)
    else:
        _multi_tensor_stacey(params, grads, zs, ms, **hyperparameters)


def _fused_by_default(params: list[Tensor]) -> bool:
    if torch.compiler.is_compiling():  # the caller compiles the whole step: trace the foreach path
        return False
    return fused_supported() and all(t.device.type in ("cpu", "cuda") for t in params)
