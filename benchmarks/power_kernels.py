"""Why p = 4.5 costs more than SGD at 2 threads: the general power |c| ** e inside the compiled CPU kernel,
written four ways, against torch's SGD(momentum, foreach) on one ResNet-18-sized flat tensor, at 1 and 2
threads, interleaved; and each form's accuracy against float64 ``torch.pow``.

    python benchmarks/power_kernels.py [--repetitions 21] [--numel 11700000]

Forms: ``exp_log`` exp(e * log(b)), the kernel's (Sleef's exp and log, 1 ulp each); ``pow`` torch.pow with a
tensor exponent (Sleef's powf); ``atanh_series`` and ``cephes``: log from the float's exponent and mantissa
(bit casts) with a polynomial or series, exp by 2^n times a polynomial; ``rsqrt`` is p = 3's exact form,
the floor (no power at all). Each compiles once per thread count (20-50 s in all on a 2-core CPU).
``C kernel``: stacey_lightning/optim/cpu_kernel.c, the Cephes form written in C and vectorised by the C
compiler, which Stacey runs for the general power in float32 on the CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from _report import command_line, write_report

from stacey_lightning.optim import _cpu_kernel, _fused
from stacey_lightning.optim._functional import direction

RESULTS = Path(__file__).resolve().parent / "results" / "power_kernels_cpu.md"
P = 4.5
LN2_HIGH, LN2_LOW = 0.693359375, -2.12194440e-4  # ln 2 in two parts (Cody-Waite), as Cephes splits it


def exp_log(base, exponent):
    return torch.exp(exponent * torch.log(base))


def power(base, exponent):
    return torch.pow(base, exponent)


def _exponent_and_mantissa(base):
    """k and f with base = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)), by the float's bits."""
    bits = base.view(torch.int32)
    k = (bits - 0x3F3504F3) >> 23
    return k.to(torch.float32), (bits - (k << 23)).view(torch.float32) - 1


def _exp(y):
    """e^y as 2^n * e^r, |r| <= ln(2)/2, Cephes' expf polynomial."""
    y = y.clamp(-87.3, 88.7)
    n = torch.floor(y * 1.44269504088896341 + 0.5)
    r = y - n * LN2_HIGH - n * LN2_LOW
    q = 1.9875691500e-4
    for coefficient in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        q = q * r + coefficient
    return (q * r * r + r + 1) * ((n.to(torch.int32) + 127) << 23).view(torch.float32)


def atanh_series(base, exponent):
    k, f = _exponent_and_mantissa(base)
    t = f / (f + 2)  # log(1 + f) = 2 atanh(t)
    t2 = t * t
    log = 2 * t * (1 + t2 * (1 / 3 + t2 * (1 / 5 + t2 * (1 / 7 + t2 * (1 / 9 + t2 / 11)))))
    return _exp(exponent * (k * math.log(2) + log))


def cephes(base, exponent):
    k, f = _exponent_and_mantissa(base)
    z = f * f
    poly = 7.0376836292e-2
    for coefficient in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                        2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1):  # fmt: skip
        poly = poly * f + coefficient
    log = f + (f * z * poly - 0.5 * z + k * LN2_LOW) + k * LN2_HIGH
    return _exp(exponent * log)


FORMS = {"exp_log": exp_log, "pow": power, "atanh_series": atanh_series, "cephes": cephes, "rsqrt": None}
C_KERNEL = "C kernel (cpu_kernel.c)"


def c_kernel_power(base, exponent: float):
    """base ** exponent from the C kernel (what Stacey runs at p = 4.5 in float32 since 2026-12-03): with
    beta1 = alpha = tau = 0, lr = 1 and x = 0 its update leaves x = -base * (base + eps) ** exponent."""
    p = (2 + exponent) / (1 + exponent)  # direction_exponent's inverse
    x, z, m = (torch.zeros_like(base) for _ in range(3))
    scalars = _fused.coefficients(lr=1.0, p=p, alpha=0.0, tau=0.0, beta1=0.0, beta2=0.0, weight_decay=0.0,
                                  eps=_cpu_kernel.FLT_MIN, maximize=False)  # fmt: skip
    _cpu_kernel.bind(_cpu_kernel.kernel(), "power", scalars)(x, base, z, m)
    return -x / base


def kernel(form):
    """Stacey's p2 update (the compiled kernel's body) with the power written as ``form``."""
    kind = "rsqrt" if form is None else "power"

    def update(x, g, z, m, beta1, g_in_c, alpha, decay, tau, step, exponent, eps, beta2, g_in_m, mirror, inverse):
        c = beta1 * m + g_in_c * g
        z_new = z - alpha * c
        s = direction(c, kind, exponent, eps, form)
        x.copy_(decay * x + tau * (z_new - x) - step * s)
        z.copy_(z_new)
        m.copy_(beta2 * m + g_in_m * g)

    return update


def accuracy_lines() -> list[str]:
    generator = torch.Generator().manual_seed(0)
    n = 1_000_000
    base = torch.rand(n, generator=generator) * 10 ** (torch.rand(n, generator=generator) * 12 - 8) + 1e-8
    lines = ["max relative error against float64 torch.pow, 1M bases in [1e-8, 1e4):", ""]
    for exponent in ((2 - P) / (P - 1), -0.5, 1.5):
        reference = torch.pow(base.double(), exponent)
        cells = []
        for name, form in FORMS.items():
            if form is not None:
                got = torch.compile(form, dynamic=True)(base, torch.tensor(exponent)).double()
                cells.append(f"{name} {((got - reference) / reference).abs().max().item():.1e}")
        got = c_kernel_power(base, exponent).double()
        cells.append(f"C kernel {((got - reference) / reference).abs().max().item():.1e}")
        lines.append(f"  e = {exponent:+.3f}: " + ", ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=21)
    parser.add_argument("--numel", type=int, default=11_700_000, help="elements (default: ResNet-18's parameters)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    arguments = parser.parse_args(argv)
    torch._dynamo.config.recompile_limit = 64
    compiled = {
        name: torch.compile(_fused._own_code(kernel(form), f"power_{name}"), dynamic=True, fullgraph=True,
                            options=_fused.CPU_COMPILE_OPTIONS)
        for name, form in FORMS.items()
    }  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    x, g, z, m = (torch.randn(arguments.numel, generator=generator) for _ in range(4))
    hyper = _fused.coefficients(lr=1e-2, p=P, alpha=0.1, tau=0.01, beta1=0.9, beta2=0.99, weight_decay=0.0,
                                eps=1e-8, maximize=False)  # fmt: skip
    scalars = torch.tensor(hyper, dtype=torch.float32).unbind()
    parameter = torch.nn.Parameter(x.clone())
    parameter.grad = g.clone()
    sgd = torch.optim.SGD([parameter], lr=0.01, momentum=0.9, foreach=True)
    steps = {name: (lambda f=f: f(x, g, z, m, *scalars)) for name, f in compiled.items()}
    c_update = _cpu_kernel.bind(_cpu_kernel.kernel(), "power", hyper)
    steps[C_KERNEL] = lambda: c_update(x, g, z, m)
    steps["SGD(momentum, foreach)"] = sgd.step
    threads, times = (1, 2), {name: {count: [] for count in (1, 2)} for name in steps}
    load = [f"{value:.2f}" for value in os.getloadavg()]
    for count in threads:  # compile, and warm up, at each thread count
        torch.set_num_threads(count)
        for step in steps.values():
            step()
    for _ in range(arguments.repetitions):
        for count in threads:
            torch.set_num_threads(count)
            for name, step in steps.items():
                started = time.perf_counter()
                step()
                times[name][count].append(time.perf_counter() - started)
    lines = [f"{arguments.numel:,} float32 elements, p = {P}, median of {arguments.repetitions} interleaved steps", ""]
    lines.append(f"{'kernel':24s} | 1 thread: ms  x SGD | 2 threads: ms  x SGD")
    for name in steps:
        cells = []
        for count in threads:
            ms = statistics.median(times[name][count]) * 1e3
            sgd_ms = statistics.median(times["SGD(momentum, foreach)"][count]) * 1e3
            cells.append(f"{ms:13.2f} {ms / sgd_ms:6.2f}")
        lines.append(f"{name:24s} | " + " | ".join(cells))
    lines += ["", *accuracy_lines(), "", f"Load average at the start: {', '.join(load)} (2 cores)."]
    body = "```\n" + "\n".join(lines) + "\n```"
    command = command_line("power_kernels.py", sys.argv[1:] if argv is None else argv)
    title = "The general power in the CPU kernel: four exact forms compiled by torch, and the C kernel"
    text = write_report(arguments.output, title, command, body)
    print(text)
    return text


if __name__ == "__main__":
    main()
