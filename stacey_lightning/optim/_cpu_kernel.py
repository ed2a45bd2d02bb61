"""The CPU kernels in C: Stacey's "p2" update in float32 (every exact form of the direction) and its update
in Adam's norm, written in cpu_kernel.c and built on first use with the machine's C compiler.

Why not the torch.compile'd kernel that serves every other case: its general power is exp(e * log(b))
with Sleef's exp and log, and inductor turns the float bit casts that a cheaper log needs into a scalar
loop (benchmarks/results/power_kernels_cpu.md), so at p = 4.5 a step cost 1.4x-1.8x SGD's at 2 threads.
Written in C, the compiler vectorises the bit fields and the polynomials of the whole update; the cheap
forms (p = 2, 3, inf) cost 5-10% less than compiled; and the first step does not wait 20-50 s for
torch.compile (benchmarks/results/step_speed_cpu.md has the figures). Adam's norm has no compiled kernel:
its multi-tensor path reads and writes the state in nine passes, the C kernel in one.

The library is built once per source, compiler and vector flags, into a folder of the system's
temporary directory, under a name that a concurrent build (two workers, two DDP processes) replaces
atomically; later processes load it in milliseconds. Where it cannot be built or loaded (no C compiler,
no OpenMP, a temporary directory mounted noexec), a warning says why, once, and the compiled kernel runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import uuid
import warnings
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["kernel", "adam_kernel", "bind", "bind_adam", "KINDS", "FLT_MIN"]

FLT_MIN = 1.1754943508222875e-38  # the smallest normal float32: the kernel's log needs base >= it (eps ensures it)
KINDS = {"identity": 0, "rsqrt": 1, "sign": 2, "power": 3}  # _functional.direction_kind's names, as the C enum
_SOURCE = "cpu_kernel.c"
_SYMBOL = "stacey_p2"
_ADAM_SYMBOL = "stacey_adam"
_SCALARS = 10  # _fused.coefficients' first ten; the pp variant's two exponents are not used by "p2"
_ADAM_SCALARS = 11  # _adam.coefficients
# The vector flags for the capability torch detected at import (the same that picks its own kernels).
_VECTOR_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
# No -ffast-math: nan and inf must pass through as in torch's own arithmetic.
_FLAGS = ["-O3", "-fPIC", "-shared", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
_COMPILERS = ("cc", "gcc", "clang")


class _Library:
    """This process's built kernel, or why there is none."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._functions: dict[str, Callable[..., None]] | None = None
        self.failed: str | None = None

    def get(self, symbol: str = _SYMBOL) -> Callable[..., None] | None:
        with self._lock:
            if self._functions is None and self.failed is None:
                try:
                    self._functions = _load(_build())
                except (OSError, subprocess.SubprocessError, RuntimeError) as error:
                    self.failed = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    warnings.warn(
                        f"Stacey could not build its C kernel ({self.failed}); its CPU steps in float32 take "
                        "the compiled kernel, slower at a p other than 2, 3 and inf, and in Adam's norm the "
                        "multi-tensor one, about 9x slower",
                        RuntimeWarning,
                        stacklevel=6,
                    )
            return None if self._functions is None else self._functions[symbol]


_LIBRARY = _Library()


def kernel() -> Callable[..., None] | None:
    """The C kernel ``stacey_p2``, built and loaded on first use; None where it cannot be."""
    return _LIBRARY.get()


def adam_kernel() -> Callable[..., None] | None:
    """The C kernel ``stacey_adam`` (Adam's norm), built and loaded on first use; None where it cannot be."""
    return _LIBRARY.get(_ADAM_SYMBOL)


def bind(
    function: Callable[..., None], kind: str, scalars: tuple[float, ...]
) -> Callable[[Tensor, Tensor, Tensor, Tensor], None]:
    """``update(x, g, z, m)``: one step of the kernel for direction ``kind`` on four flat float32 CPU tensors
    of one length, with this step's coefficients (``_fused.coefficients``) bound once, not converted per call."""
    code = KINDS[kind]
    coefficients = (ctypes.c_float * _SCALARS)(*scalars[:_SCALARS])

    def update(x: Tensor, g: Tensor, z: Tensor, m: Tensor) -> None:
        _check((x, g, z, m))
        function(
            code, x.data_ptr(), g.data_ptr(), z.data_ptr(), m.data_ptr(), x.numel(), coefficients,
            torch.get_num_threads(),
        )  # fmt: skip

    return update


def bind_adam(function: Callable[..., None], scalars: tuple[float, ...]) -> Callable[..., None]:
    """``update(x, g, z, m, v)``: one step of the kernel in Adam's norm on five flat float32 CPU tensors of one
    length, with this step's coefficients (``_adam.coefficients``) bound once."""
    coefficients = (ctypes.c_float * _ADAM_SCALARS)(*scalars)

    def update(x: Tensor, g: Tensor, z: Tensor, m: Tensor, v: Tensor) -> None:
        _check((x, g, z, m, v))
        function(
            x.data_ptr(), g.data_ptr(), z.data_ptr(), m.data_ptr(), v.data_ptr(), x.numel(), coefficients,
            torch.get_num_threads(),
        )  # fmt: skip

    return update


def _check(tensors: tuple[Tensor, ...]) -> None:
    """The kernels write through raw pointers: what they are given must be exactly what they expect."""
    if any(t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous() for t in tensors) or any(
        t.numel() != tensors[0].numel() for t in tensors
    ):
        raise ValueError(f"the C kernel takes {len(tensors)} contiguous float32 CPU tensors of one length")


def _compiler() -> str:
    for name in (os.environ.get("CC"), *_COMPILERS):
        if name and (path := shutil.which(name)):
            return path
    raise RuntimeError(f"no C compiler found (set CC, or install one of {', '.join(_COMPILERS)})")


def _cache_folder() -> Path:
    try:
        user = str(os.getuid())
    except AttributeError:  # no uid (Windows)
        user = os.environ.get("USERNAME", "user")
    folder = Path(tempfile.gettempdir()) / f"stacey_lightning_{user}"
    folder.mkdir(mode=0o700, exist_ok=True)
    # A library loaded from here runs as this user: a folder that someone else owns or may write to is refused.
    status = folder.stat()
    if hasattr(os, "getuid") and (status.st_uid != os.getuid() or status.st_mode & 0o022):
        raise RuntimeError(f"{folder} is not this user's alone (owner or permissions); remove it")
    return folder


def _build() -> Path:
    """The shared library, compiled unless this source, compiler and flags were compiled before."""
    source = resources.files(__package__).joinpath(_SOURCE).read_bytes()
    compiler = _compiler()
    flags = [*_FLAGS, *_VECTOR_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])]
    key = hashlib.sha256(b"\0".join([source, compiler.encode(), " ".join(flags).encode(), platform.machine().encode()]))
    folder = _cache_folder()
    library = folder / f"{_SYMBOL}-{key.hexdigest()[:16]}.so"
    if library.exists():
        return library
    name = f"{_SYMBOL}-{uuid.uuid4().hex}"
    source_file, built = folder / f"{name}.c", folder / f"{name}.so"
    source_file.write_bytes(source)
    try:
        result = subprocess.run(
            [compiler, *flags, str(source_file), "-o", str(built)], capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{Path(compiler).name} failed: {(result.stderr.strip() or 'no message')[:300]}")
        os.replace(built, library)  # atomic: a concurrent build's library is replaced by an identical one
    finally:
        source_file.unlink(missing_ok=True)
        built.unlink(missing_ok=True)
    return library


def _load(library: Path) -> dict[str, Callable[..., None]]:
    """The library's kernels by symbol, their argument types declared."""
    loaded = ctypes.CDLL(str(library))
    floats, length, threads = ctypes.POINTER(ctypes.c_float), ctypes.c_int64, ctypes.c_int
    arguments = {
        _SYMBOL: [ctypes.c_int, *[ctypes.c_void_p] * 4, length, floats, threads],
        _ADAM_SYMBOL: [*[ctypes.c_void_p] * 5, length, floats, threads],
    }
    functions = {}
    for symbol, argtypes in arguments.items():
        function = getattr(loaded, symbol)
        function.argtypes, function.restype = argtypes, None
        functions[symbol] = function
    return functions
