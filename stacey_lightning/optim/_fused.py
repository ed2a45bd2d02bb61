"""The compiled path: the whole update of a tensor as one ``torch.compile``d elementwise pass over
x, g, z and m (four reads, three writes: the memory floor), with its fallbacks.

Hyperparameters are kernel inputs (0-d tensors), never constants, so schedulers and tuning studies
that change them never recompile. On the CPU, tensors are flattened to 1-D and compiled with dynamic
sizes, so one kernel per (variant, direction kind) serves every model (dynamo compiles it again for
each torch thread count it meets), and runs on every thread torch has; small tensors are packed into
one call, with their z and m kept in one flat buffer. On CUDA, launching one kernel per tensor from
Python costs more than the update itself, so the whole list is compiled at once (static shapes: one
compile per parameter group and model) and inductor's combo kernels update many tensors per launch.

On the CPU, float32 steps of the "p2" variant run a C kernel instead (_cpu_kernel.py): inductor could
not vectorise the cheap log that the general power needs, and it spares the CPU user the compile.

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

from stacey_lightning.optim import _cpu_kernel
from stacey_lightning.optim._functional import (
    _multi_tensor_stacey,
    direction,
    direction_exponent,
    direction_kind,
    group_by_device_and_dtype,
    signed_power,
)

__all__ = ["fused_stacey", "fused_on_cpu", "local_shards", "RUNTIME", "SMALL_TENSOR_NUMEL", "CPU_COMPILE_OPTIONS"]

# A kernel call costs tens of microseconds (guards, wrappers, starting the threads) whatever the
# tensor's size: below this many elements, tensors are packed into one flat call instead.
SMALL_TENSOR_NUMEL = 1 << 16

# Why the CPU kernel is compiled with dynamic threads (issue 18; benchmarks/results/step_speed_cpu.md,
# "Why", has the experiments). By default inductor decides at code generation whether a CPU loop runs
# in parallel (torch/_inductor/codegen/cpp.py, decide_parallel_depth): never when compiled at one
# thread, and not when the size hint per thread is under cpp.min_chunk_size (512 elements); with
# dynamic sizes the hint is the size of the first call. The on-disk FX graph cache keys the thread
# count but not the hint, so the first process on a machine to step a small model at two threads (24-
# and 25-element float32 kernels were in /tmp/torchinductor_root) left a serial kernel that every later
# process loaded for every size: the second thread did nothing. Not the cause: switching
# torch.set_num_threads in one process (dynamo guards on the thread count and compiles again), and the
# packing of small tensors (one call of 208k elements for ResNet-18, split over both threads).
# dynamic_threads always emits `#pragma omp parallel` and lets OpenMP use as many threads as torch has
# when the kernel runs, whatever the hint, the thread count at compile time or the cache's history.
CPU_COMPILE_OPTIONS = {"cpp.dynamic_threads": True}


def _symbolic_power(base: Tensor, exponent: Tensor) -> Tensor:
    """base ** exponent for base >= 0, as exp(exponent * log(base)). Inside a compiled kernel a
    Python-float exponent of pow is specialised into the graph (one recompile per p); a product
    with it stays symbolic. log(0) = -inf gives exp(-inf) = 0 for the positive exponents used.
    (exp2 and log2 were tried and were slower inside the CPU kernel.)"""
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
        """The CPU kernel: one flat tensor per call, dynamic sizes, as many threads as torch has at run time."""
        key = ("tensor", variant, kind)
        if key not in self.kernels:
            self.kernels[key] = torch.compile(
                _kernel_body(variant, kind), dynamic=True, fullgraph=True, options=CPU_COMPILE_OPTIONS
            )
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
    # A DTensor's local shard may be an object made for this step: the state it stands for cannot be moved.
    own_state = all(z is z_local for z, z_local in zip(zs, local[2]))
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
                update = _cpu_update(variant, kind, eps, xs[0].dtype, scalars, scalar_tensors)
                fused_on_cpu(update, xs, gs, [zs_, ms_], pending, own_state)
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


def _cpu_update(
    variant: str,
    kind: str,
    eps: float,
    dtype: torch.dtype,
    scalars: tuple[float, ...],
    scalar_tensors: tuple[Tensor, ...],
) -> Callable[[Tensor, Tensor, Tensor, Tensor], None]:
    """This step's CPU kernel as ``update(x, g, z, m)`` on flat tensors, its hyperparameters bound: the C
    kernel for the p2 variant in float32 (_cpu_kernel.py) where it builds, the compiled one otherwise."""
    if variant == "p2" and dtype == torch.float32 and eps >= _cpu_kernel.FLT_MIN:
        native = _cpu_kernel.kernel()
        if native is not None:
            return _cpu_kernel.bind(native, kind, scalars)
    compiled = RUNTIME.kernel(variant, kind)
    return lambda x, g, z, m: compiled(x, g, z, m, *scalar_tensors)


def fused_on_cpu(update, xs, gs, states: list[list[Tensor]], pending: list[int], own_state: bool) -> None:
    """``update(x, g, *state)`` over the ``pending`` tensors (emptied as they are updated) on flat tensors: the
    small ones packed into one call, the others one call each. ``states``: lists of state tensors (z, m, ...)."""
    small = [i for i in pending if xs[i].numel() < SMALL_TENSOR_NUMEL]
    if small:
        x_list, g_list, *state_lists = [[t[i] for i in small] for t in (xs, gs, *states)]
        # x and g are packed into new flat tensors (one C++ call per list, not a Python call per tensor);
        # detached, since one tensor alone is packed as an alias of itself (see the loop below).
        x_flat, g_flat = (torch._C._nn.flatten_dense_tensors(tensors).detach() for tensors in (x_list, g_list))
        packed_states = [_packed_state(tensors, own_state) for tensors in state_lists]
        update(x_flat, g_flat, *(flat for flat, _ in packed_states))
        copies = [(tensors, flat) for tensors, (flat, copied) in zip(state_lists, packed_states) if copied]
        for tensors, packed in [(x_list, x_flat), *copies]:
            torch._foreach_copy_(tensors, torch._C._nn.unflatten_dense_tensors(packed, tensors))
        done = set(small)
        pending[:] = [i for i in pending if i not in done]
    for i in list(pending):
        x = xs[i]
        # The state is created contiguous; x and g can be any view: use a contiguous copy then.
        x_flat = x.view(-1) if x.is_contiguous() else x.contiguous().view(-1)
        # Detached flat aliases (same memory): neither views nor requiring grad, like the packed
        # tensors, so that one compiled graph serves every call; views of a parameter made dynamo
        # recompile for requires_grad and again for guards on the view's base's sizes.
        flat = (t.detach() for t in (x_flat, gs[i].reshape(-1), *(state[i].view(-1) for state in states)))
        update(*flat)
        if x_flat.data_ptr() != x.data_ptr():
            x.copy_(x_flat.view_as(x))
        pending.remove(i)


def _packed_state(tensors: list[Tensor], movable: bool) -> tuple[Tensor, bool]:
    """The small tensors' z (or m) as one flat tensor, and whether it is a copy to be copied back.

    Packing and unpacking cost a call per tensor, more than the update of a small tensor: so the first
    step moves the state tensors themselves into one flat buffer (``set_``: the same tensor objects,
    so optimizer.state still holds them), and later steps find them there, one after another, and
    update the buffer in place. What cannot be moved is copied in and out instead: views (moving one
    would not move its base) and, where ``movable`` is False, DTensors' local shards (moving one may
    not move its DTensor).
    """
    run = _run_of(tensors)
    if run is not None:
        return run, False
    flat = torch._C._nn.flatten_dense_tensors(tensors).detach().clone()
    if not movable or any(t._is_view() for t in tensors):
        return flat, True
    offset = 0
    for t in tensors:
        t.set_(flat.untyped_storage(), offset, t.shape)
        offset += t.numel()
    return flat, False


def _run_of(tensors: list[Tensor]) -> Tensor | None:
    """One flat tensor over ``tensors``' memory where they lie contiguous and in order in one storage
    (as _packed_state leaves them, and torch.load rebuilds them); None otherwise."""
    first = tensors[0]
    start, itemsize, total = first.data_ptr(), first.element_size(), 0
    for t in tensors:
        if t.data_ptr() != start + total * itemsize or not t.is_contiguous():
            return None
        total += t.numel()
    storage = first.untyped_storage()
    if (first.storage_offset() + total) * itemsize > storage.nbytes():  # adjacent, but in another storage
        return None
    return torch.empty(0, dtype=first.dtype, device=first.device).set_(storage, first.storage_offset(), (total,))
