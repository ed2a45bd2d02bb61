"""The compiled path: the whole update of a tensor as one ``torch.compile``d elementwise pass over
x, g, z and m (four reads, three writes: the memory floor), with its fallbacks.

Hyperparameters are kernel inputs (0-d tensors), never constants, so schedulers and tuning studies
that change them never recompile. On the CPU, tensors are flattened to 1-D and compiled with dynamic
sizes, so one kernel per (variant, direction kind) serves every model; small tensors are packed into
one call. On CUDA, launching one kernel per tensor from Python costs more than the update itself, so
the whole list is compiled at once (static shapes: one compile per parameter group and model) and
inductor's combo kernels update many tensors per launch.

Parameters sharded by FSDP2 are DTensors; the update is elementwise, so each process updates the
shard it holds (``to_local``), with no communication.
"""

from __future__ import annotations

import math
import sys
import types
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from stacey_lightning.optim._functional import (
    _multi_tensor_stacey,
    direction,
    direction_exponent,
    direction_kind,
    group_by_device_and_dtype,
    signed_power,
)

__all__ = ["fused_stacey", "local_shards", "RUNTIME", "SMALL_TENSOR_NUMEL"]

# A kernel call costs tens of microseconds (guards, wrappers, starting the threads) whatever the
# tensor's size: below this many elements, tensors are packed into one flat call instead.
SMALL_TENSOR_NUMEL = 1 << 16


def _symbolic_power(base: Tensor, exponent: Tensor) -> Tensor:
    """base ** exponent for base >= 0, as exp(exponent * log(base)). Inside a compiled kernel a
    Python-float exponent of pow is specialised into the graph (one recompile per p); a product
    with it stays symbolic. log(0) = -inf gives exp(-inf) = 0 for the positive exponents used.
    (exp2 and log2 measured 1.7x slower inside the CPU kernel.)"""
    return torch.exp(exponent * torch.log(base))


def coefficients(
    *,
    lr: float,
    p: float,
    alpha: float,
    tau: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> tuple[float, ...]:
    """The kernel's inputs, in its order: every product of hyperparameters formed once per step on the
    host (in float64), so that the kernel does no scalar arithmetic per element. The gradient's sign
    (maximize) is folded into the two coefficients that multiply it."""
    sign = -1.0 if maximize else 1.0
    mirror = 1.0 if p == math.inf else p - 1  # the pp variant's exponents; p is finite there
    return (beta1, sign * (1 - beta1), alpha, 1 - lr * weight_decay, tau, (1 - tau) * lr, direction_exponent(p), eps,
            beta2, sign * (1 - beta2), mirror, 1 / mirror)  # fmt: skip


def _kernel_body(variant: str, kind: str) -> Callable:
    def kernel(x, g, z, m, beta1, g_in_c, alpha, decay, tau, step, exponent, eps, beta2, g_in_m, mirror, inverse):
        c = beta1 * m + g_in_c * g
        if variant == "p2":
            z_new = z - alpha * c
        else:
            u = signed_power(z, mirror, _symbolic_power) - alpha * c
            z_new = torch.where(alpha == 0, z, signed_power(u, inverse, _symbolic_power))
        s = direction(c, kind, exponent, eps, _symbolic_power)
        x.copy_(decay * x + tau * (z_new - x) - step * s)
        z.copy_(z_new)
        m.copy_(beta2 * m + g_in_m * g)

    return _own_code(kernel, f"stacey_{variant}_{kind}")


def _own_code(function: Callable, name: str) -> Callable:
    """``function`` with a code object of its own. dynamo caches compiled graphs per code object,
    with a small recompile limit: closures made by one factory would share one budget."""
    return types.FunctionType(
        function.__code__.replace(co_name=name), function.__globals__, name, function.__defaults__, function.__closure__
    )


class _FusedRuntime:
    """This process's compiled kernels, and whether compiling still works here.

    Attributes:
        cuda_compile_options: inductor options of the CUDA list kernel (benchmarks change them).
        disabled_reason: why compiling failed, after which every step takes the foreach path.
    """

    def __init__(self) -> None:
        self.kernels: dict[tuple, Callable] = {}
        self.cuda_compile_options = {"combo_kernels": True}
        self.disabled_reason: str | None = None
        self._recompile_limit_warned = False

    def supported(self) -> bool:
        """Whether the compiled path can run here (dynamo supports this Python and it has not failed)."""
        return self.disabled_reason is None and torch._dynamo.is_dynamo_supported()

    def kernel(self, variant: str, kind: str) -> Callable:
        """The CPU kernel: one flat tensor per call, dynamic sizes."""
        key = ("tensor", variant, kind)
        if key not in self.kernels:
            self.kernels[key] = torch.compile(_kernel_body(variant, kind), dynamic=True, fullgraph=True)
        return self.kernels[key]

    def list_kernel(self, variant: str, kind: str) -> Callable:
        """The CUDA kernel: a whole list of tensors per call, static shapes."""
        key = ("list", variant, kind)
        if key not in self.kernels:
            body = _kernel_body(variant, kind)

            def list_kernel(xs, gs, zs, ms, *hyperparameters):
                for x, g, z, m in zip(xs, gs, zs, ms):
                    body(x, g, z, m, *hyperparameters)

            self.kernels[key] = torch.compile(
                _own_code(list_kernel, f"stacey_list_{variant}_{kind}"),
                dynamic=False,
                fullgraph=True,
                options=self.cuda_compile_options,
            )
        return self.kernels[key]

    def disable(self, error: Exception) -> None:
        self.disabled_reason = f"{type(error).__name__}: {error}"
        warnings.warn(
            "Stacey could not compile its fused step and falls back to the foreach path for the rest "
            f"of this process (pass foreach=True to silence this). Reason: {self.disabled_reason}",
            RuntimeWarning,
            stacklevel=5,
        )

    def warn_recompile_limit_once(self, error: Exception) -> None:
        if self._recompile_limit_warned:
            return
        self._recompile_limit_warned = True
        warnings.warn(
            "Stacey's fused step reached torch.compile's recompile limit for new parameter lists; those "
            f"lists take the foreach path (raise torch._dynamo.config.recompile_limit to avoid it). {error}",
            RuntimeWarning,
            stacklevel=5,
        )


RUNTIME = _FusedRuntime()


def local_shards(tensors: list[Tensor]) -> list[Tensor]:
    """The parts of ``tensors`` this process holds: a DTensor's local shard, any other tensor itself.

    DTensors exist only once torch.distributed.tensor is imported (by FSDP2, for one); until then
    there is nothing to unwrap, and importing it here would cost every user of Stacey a second.
    """
    dtensor = sys.modules.get("torch.distributed.tensor")
    if dtensor is None:
        return tensors
    return [t.to_local() if isinstance(t, dtensor.DTensor) else t for t in tensors]


def fused_stacey(
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
    """The compiled step; falls back to the foreach path where compiling is impossible."""
    hyper = dict(lr=lr, p=p, alpha=alpha, tau=tau, beta1=beta1, beta2=beta2, weight_decay=weight_decay, eps=eps)
    kind = direction_kind(p)
    scalars = coefficients(**hyper, maximize=maximize)
    local = [local_shards(tensors) for tensors in (params, grads, zs, ms)]
    for xs, gs, zs_, ms_ in group_by_device_and_dtype(*local):
        if not RUNTIME.supported():
            _multi_tensor_stacey(xs, gs, zs_, ms_, variant=variant, maximize=maximize, **hyper)
            continue
        pending = list(range(len(xs)))  # tensors not yet updated, for the fallback below
        # Hyperparameters as 0-d tensors, made once per step. As Python floats, arithmetic between
        # them (lr * weight_decay) would be specialised into the graph (a recompile per value), and
        # each of the many CPU kernel calls would turn every float into a tensor itself. The copy
        # to the device is asynchronous: no host synchronisation.
        # In the parameters' precision (float32 at least): no conversion per element in the kernel.
        dtype = torch.promote_types(xs[0].dtype, torch.float32)
        scalar_tensors = torch.tensor(scalars, dtype=dtype).to(xs[0].device, non_blocking=True).unbind()
        try:
            if xs[0].device.type == "cuda":
                RUNTIME.list_kernel(variant, kind)(xs, gs, zs_, ms_, *scalar_tensors)
            else:
                _fused_on_cpu(RUNTIME.kernel(variant, kind), xs, gs, zs_, ms_, scalar_tensors, pending)
        except (torch._dynamo.exc.BackendCompilerFailed, torch._dynamo.exc.FailOnRecompileLimitHit) as error:
            # Compiling is impossible here (no C++ compiler, unsupported platform), or, on CUDA,
            # this process has compiled too many parameter lists (one per group and model). Both
            # fail before the kernel runs, so the pending tensors are untouched.
            if isinstance(error, torch._dynamo.exc.BackendCompilerFailed):
                RUNTIME.disable(error)
            else:
                RUNTIME.warn_recompile_limit_once(error)
            _multi_tensor_stacey(
                [xs[i] for i in pending],
                [gs[i] for i in pending],
                [zs_[i] for i in pending],
                [ms_[i] for i in pending],
                variant=variant,
                maximize=maximize,
                **hyper,
            )


def _fused_on_cpu(kernel, xs, gs, zs, ms, scalars, pending: list[int]) -> None:
    small = [i for i in pending if xs[i].numel() < SMALL_TENSOR_NUMEL]
    if small:
        flat = [torch.cat([t[i].reshape(-1) for i in small]) for t in (xs, gs, zs, ms)]
        kernel(*flat, *scalars)
        sizes = [xs[i].numel() for i in small]
        for tensors, packed in ((xs, flat[0]), (zs, flat[2]), (ms, flat[3])):
            torch._foreach_copy_(
                [tensors[i] for i in small], [part.view_as(tensors[i]) for i, part in zip(small, packed.split(sizes))]
            )
        pending[:] = [i for i in pending if i not in set(small)]
    for i in list(pending):
        x = xs[i]
        # z and m are created contiguous; x and g can be any view: use a contiguous copy then.
        x_flat = x.view(-1) if x.is_contiguous() else x.contiguous().view(-1)
        kernel(x_flat, gs[i].reshape(-1), zs[i].view(-1), ms[i].view(-1), *scalars)
        if x_flat.data_ptr() != x.data_ptr():
            x.copy_(x_flat.view_as(x))
        pending.remove(i)
