"""Time one optimizer step on ResNet-18's parameter shapes, against torch's own optimizers.

Every optimizer is timed in the same run, interleaved repetition by repetition, and reported as a
median and as a ratio to SGD(momentum, foreach). Also printed: optimizer-state bytes per parameter
byte, the peak extra memory of one step, the one-time compile cost, and how the step time grows
with model size.

    python benchmarks/step_speed.py                 # CPU, ~2 minutes; writes results/step_speed_cpu.md
    python benchmarks/step_speed.py --device cuda   # adds AdamW(fused=True); results/step_speed_cuda.md
"""

from __future__ import annotations

import os

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the CPU memory profiler quiet

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from _report import command_line, write_report

from stacey_lightning import Stacey
from stacey_lightning.optim._fused import RUNTIME

RESULTS = Path(__file__).resolve().parent / "results"


def resnet18_shapes() -> list[torch.Size]:
    return [p.shape for p in torchvision.models.resnet18().parameters()]


def shapes_with_params(count: int) -> list[torch.Size]:
    """Square-ish matrices and their bias vectors adding up to about `count` parameters."""
    side = 1024
    shapes = []
    while sum(s.numel() for s in shapes) + side * side <= count:
        shapes += [torch.Size([side, side]), torch.Size([side])]
    return shapes or [torch.Size([count])]


class PublishedStyleStacey:
    """The published research code's shape: a per-tensor Python loop, state kept beside the
    parameter, and five NaN assertions per tensor per step (each a host synchronisation)."""

    def __init__(self, params, lr=1e-2, p=3.0, alpha=0.1, tau=0.01, betas=(0.9, 0.99), weight_decay=0.0, eps=1e-8):
        self.params = list(params)
        self.lr, self.p, self.alpha, self.tau, self.betas, self.wd, self.eps = (
            lr,
            p,
            alpha,
            tau,
            betas,
            weight_decay,
            eps,
        )
        self.state = {}

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        for x in self.params:
            if x.grad is None:
                continue
            if x not in self.state:
                self.state[x] = (x.detach().clone(), torch.zeros_like(x))
            z, m = self.state[x]
            g = x.grad
            assert not torch.isnan(g).any()
            c = beta1 * m + (1 - beta1) * g
            assert not torch.isnan(c).any()
            z.sub_(self.alpha * c)
            assert not torch.isnan(z).any()
            s = c * (c.abs() + self.eps).pow((2 - self.p) / (self.p - 1))
            assert not torch.isnan(s).any()
            x.copy_(self.tau * z + (1 - self.tau) * (x - self.lr * s) - self.lr * self.wd * x)
            assert not torch.isnan(x).any()
            m.mul_(beta2).add_(g, alpha=1 - beta2)


def optimizers(device: torch.device) -> dict[str, Callable]:
    table = {
        "SGD(momentum, foreach)": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, foreach=True),
        "AdamW(foreach)": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True),
        "AdamW(for-loop)": lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=False),
    }
    if device.type == "cuda":
        table["AdamW(fused)"] = lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)
    for p in (3.0, 4.5):
        table[f"Stacey p={p:g} default"] = lambda ps, p=p: Stacey(ps, p=p)
        table[f"Stacey p={p:g} foreach"] = lambda ps, p=p: Stacey(ps, p=p, foreach=True)
        table[f"Stacey p={p:g} plain loop"] = lambda ps, p=p: Stacey(ps, p=p, foreach=False)
    table["published-style loop p=3"] = lambda ps: PublishedStyleStacey(ps, p=3.0)
    return table


def make_params(shapes, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        param = torch.nn.Parameter(torch.randn(shape, generator=gen).to(device))
        param.grad = torch.randn(shape, generator=gen).to(device) * 1e-2
        params.append(param)
    return params


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_step(optimizer, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    optimizer.step()
    synchronize(device)
    return time.perf_counter() - start


def state_bytes(optimizer) -> int:
    return sum(
        t.numel() * t.element_size()
        for s in optimizer.state.values()
        for t in (s.values() if isinstance(s, dict) else s)
        if torch.is_tensor(t) and t.ndim > 0
    )


def peak_extra_memory(optimizer, device) -> int:
    """Bytes allocated beyond the steady state during one step (state already created).

    CUDA: the allocator's peak. CPU: the profiler does not order frees, so this is the sum of all
    allocations made during the step, an upper bound on the peak.
    """
    if device.type == "cuda":
        synchronize(device)
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        optimizer.step()
        synchronize(device)
        return torch.cuda.max_memory_allocated() - base
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer.step()
    return sum(max(e.self_cpu_memory_usage, 0) for e in prof.events())


def measure(shapes, device, names, repetitions, warmup) -> dict[str, dict]:
    table = optimizers(device)
    built = {}
    results = {}
    for name in names:
        optimizer = table[name](make_params(shapes, device))
        start = time.perf_counter()
        time_step(optimizer, device)  # the first step creates state (and compiles, for the fused path)
        first = time.perf_counter() - start
        for _ in range(warmup):
            time_step(optimizer, device)
        built[name] = optimizer
        results[name] = {"times": [], "first": first}
    for _ in range(repetitions):  # interleaved, so that machine noise hits every optimizer alike
        for name, optimizer in built.items():
            results[name]["times"].append(time_step(optimizer, device))
    param_bytes = sum(s.numel() for s in shapes) * 4
    for name, optimizer in built.items():
        results[name]["median"] = statistics.median(results[name]["times"])
        results[name]["state_ratio"] = state_bytes(optimizer) / param_bytes
        results[name]["peak_extra"] = peak_extra_memory(optimizer, device) / param_bytes
    return results


def main(argv=None) -> str:
    """Run, print the report and write it to ``--output``; return it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1M / 11M / 100M sweep")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--cuda-compile-options",
        type=json.loads,
        default=None,
        help="inductor options for the fused CUDA path, e.g. '{\"combo_kernels\": false}'",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Markdown file (default: results/step_speed_DEVICE.md)"
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.cuda_compile_options is not None:
        RUNTIME.cuda_compile_options = args.cuda_compile_options
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    output = args.output or RESULTS / f"step_speed_{device.type}.md"
    load_before = os.getloadavg()[0]
    lines = _measure_lines(args, device)
    # The machine may be shared: the load average says how busy it was (2 cores: 2.0 is both busy).
    load = f"1-minute load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end"
    body = "```\n" + "\n".join(lines) + "\n```\n\n" + load + "."
    text = write_report(
        output, "Step speed: Stacey against torch's optimizers", command_line("step_speed.py", argv), body
    )
    print(text)
    return text


def _measure_lines(args: argparse.Namespace, device: torch.device) -> list[str]:
    shapes = resnet18_shapes()
    lines = [
        f"device {device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"ResNet-18: {len(shapes)} tensors, {sum(s.numel() for s in shapes) / 1e6:.1f}M parameters"
    ]
    print(lines[0], flush=True)
    names = list(optimizers(device))
    results = measure(shapes, device, names, args.repetitions, args.warmup)
    reference = results["SGD(momentum, foreach)"]["median"]
    published = results["published-style loop p=3"]["median"]
    adamw_fused = results.get("AdamW(fused)", {}).get("median")
    lines.append(
        f"\n{'optimizer':30s} {'step ms':>9s} {'x SGD':>7s} {'x publ.':>8s}"
        + (f" {'x AdamW fused':>14s}" if adamw_fused else "")
        + f" {'state/param':>12s} {'peak extra/param':>17s} {'first step s':>13s}"
    )
    for name, r in results.items():
        lines.append(
            f"{name:30s} {r['median'] * 1e3:9.2f} {r['median'] / reference:7.2f} {published / r['median']:7.1f}x"
            + (f" {r['median'] / adamw_fused:14.2f}" if adamw_fused else "")
            + f" {r['state_ratio']:12.2f} {r['peak_extra']:17.2f} {r['first']:13.2f}"
        )
    lines.append(
        "\nx SGD: step time / SGD(momentum, foreach) step time (lower is faster); x publ.: how many times "
        "faster than the published-style per-tensor loop with NaN checks; state/param and peak extra/param: "
        "bytes per parameter byte (peak extra on CPU: all bytes allocated during a step, an upper bound); "
        "first step: state creation plus, for the default path, compiling."
    )

    if not args.no_scaling:
        lines.append("\nScaling (median step ms; ratio to SGD(momentum, foreach) of the same size):")
        for label, size_shapes in (
            ("1M", shapes_with_params(1_000_000)),
            ("11M (ResNet-18)", shapes),
            ("100M", shapes_with_params(100_000_000)),
        ):
            sweep = measure(
                size_shapes,
                device,
                ["SGD(momentum, foreach)", "Stacey p=3 default", "Stacey p=4.5 default"],
                max(3, args.repetitions // 3),
                1,
            )
            sgd = sweep["SGD(momentum, foreach)"]["median"]
            cells = ", ".join(f"{n} {r['median'] * 1e3:.2f} ms ({r['median'] / sgd:.2f}x)" for n, r in sweep.items())
            lines.append(f"  {label:16s} {sum(s.numel() for s in size_shapes) / 1e6:6.1f}M params: {cells}")
    return lines


if __name__ == "__main__":
    main()
