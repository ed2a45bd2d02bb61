"""Time one optimizer step on a model's parameter shapes, against torch's own optimizers.

Every optimizer is timed in the same run at every thread count, interleaved repetition by repetition
(thread count by thread count, optimizer by optimizer, so that the machine's noise hits all alike),
and reported as a median and as a ratio to SGD(momentum, foreach) at the same thread count. Also
printed: optimizer-state bytes per parameter byte, the peak extra memory of one step, the one-time
compile cost, and how the step time grows with model size.

    python benchmarks/step_speed.py                         # CPU, 1 and 2 threads, ~3 minutes
    python benchmarks/step_speed.py --device cuda           # adds AdamW(fused=True); results/step_speed_cuda.md
    python benchmarks/step_speed.py --model transformer     # a 110M-parameter LLaMA-style transformer
    python benchmarks/step_speed.py --smoke                 # tiny shapes, 2 repetitions: checks the script

A section of the output file headed "## Why" (notes written by hand) is kept when the file is rewritten.
"""

from __future__ import annotations

import os

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # keep the CPU memory profiler quiet

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _report import SMOKE_NOTE, command_line, write_report

from stacey_lightning import Stacey
from stacey_lightning.optim._fused import RUNTIME
from stacey_lightning.optim._spectral import ns_precision

RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = "SGD(momentum, foreach)"
MUON = "torch.optim.Muon"
PUBLISHED = "published-style loop p=3"
NOTES_HEADING = "## Why"


def resnet18_shapes() -> list[torch.Size]:
    import torchvision  # only this model needs it

    return [p.shape for p in torchvision.models.resnet18().parameters()]


def transformer_shapes(layers: int = 12, width: int = 768, hidden: int = 2048, vocab: int = 32000) -> list[torch.Size]:
    """A LLaMA-style decoder (RMSNorm weights, no biases, SwiGLU, embedding tied to the output): 110M
    parameters at the defaults, the size of the paper's LLaMA-100M."""
    block = [(width,), (width, width), (width, width), (width, width), (width, width), (width,),
             (hidden, width), (hidden, width), (width, hidden)]  # fmt: skip
    return [torch.Size(s) for s in [(vocab, width)] + block * layers + [(width,)]]


def small_convnet_shapes() -> list[torch.Size]:
    """A few small tensors (packed into one call on the CPU) and one large enough to be called alone."""
    return [torch.Size(s) for s in [(16, 3, 3, 3), (16,), (16,), (32, 16, 3, 3), (32,), (300, 256), (10, 300), (10,)]]


# name: (label, full-size shapes, --smoke shapes)
MODELS = {
    "resnet18": ("ResNet-18", resnet18_shapes, small_convnet_shapes),
    "transformer": ("transformer-110M", transformer_shapes, lambda: transformer_shapes(2, 64, 160, 512)),
}


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


def p_label(p: float) -> str:
    return "inf" if p == math.inf else f"{p:g}"


def optimizers(device: torch.device, ps: list[float], slow_paths: bool) -> dict[str, Callable]:
    """The rows, by name: SGD (the reference), AdamW, Stacey's default path at each p and in Adam's norm, and with
    ``slow_paths`` Stacey's foreach and plain paths and the published-style loop."""
    table = {
        REFERENCE: lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=True),
        "AdamW(foreach)": lambda params: torch.optim.AdamW(params, lr=1e-3, foreach=True),
    }
    if device.type == "cuda":
        table["AdamW(fused)"] = lambda params: torch.optim.AdamW(params, lr=1e-3, fused=True)
    if slow_paths:
        table["AdamW(for-loop)"] = lambda params: torch.optim.AdamW(params, lr=1e-3, foreach=False)
    for p in ps:
        table[f"Stacey p={p_label(p)} default"] = lambda params, p=p: Stacey(params, p=p)
    # Adam's norm (multi-tensor kernels, as AdamW(foreach)): one more state tensor than the l_p norm; at tau = 0
    # (AdamW's special case, the Muon-like anchor's rest) the pull towards z is skipped.
    table["Stacey adam default"] = lambda params: Stacey(params, norm="adam")
    table["Stacey adam tau=0"] = lambda params: Stacey(params, norm="adam", tau=0.0)
    # The presets' averaged point (average_horizon): one more state tensor and one multi-tensor lerp a step.
    table["Stacey p=3 averaged"] = lambda params: Stacey(params, p=3.0, average_decay=0.99)
    table["Stacey adam tau=0 averaged"] = lambda params: Stacey(params, norm="adam", tau=0.0, average_decay=0.99)
    if slow_paths:
        for p in (3.0, 4.5):
            table[f"Stacey p={p_label(p)} foreach"] = lambda params, p=p: Stacey(params, p=p, foreach=True)
        table["Stacey p=3 plain loop"] = lambda params: Stacey(params, p=3.0, foreach=False)
        table[PUBLISHED] = lambda params: PublishedStyleStacey(params, p=3.0)
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


def measure(shapes, device, table: dict[str, Callable], threads: list[int], repetitions, warmup) -> dict[str, dict]:
    """Per optimizer: "times" and "median" per thread count, "first" (the first step: state creation
    and, for the default path, compiling), "state_ratio", "peak_extra" (bytes) and "peak_ratio"."""
    built = {}
    results = {}
    for name, make in table.items():
        optimizer = make(make_params(shapes, device))
        torch.set_num_threads(threads[0])
        start = time.perf_counter()
        time_step(optimizer, device)  # the first step creates state (and compiles, for the fused path)
        results[name] = {"first": time.perf_counter() - start, "times": {t: [] for t in threads}}
        for count in threads:  # a new thread count compiles the CPU kernel again (dynamo guards on it)
            torch.set_num_threads(count)
            for _ in range(warmup):
                time_step(optimizer, device)
        built[name] = optimizer
    for _ in range(repetitions):  # interleaved, so that machine noise hits every optimizer alike
        for count in threads:
            torch.set_num_threads(count)
            for name, optimizer in built.items():
                results[name]["times"][count].append(time_step(optimizer, device))
    param_bytes = sum(s.numel() for s in shapes) * 4
    torch.set_num_threads(threads[0])
    for name, optimizer in built.items():
        results[name]["median"] = {t: statistics.median(v) for t, v in results[name]["times"].items()}
        results[name]["state_ratio"] = state_bytes(optimizer) / param_bytes
        results[name]["peak_extra"] = peak_extra_memory(optimizer, device)
        results[name]["peak_ratio"] = results[name]["peak_extra"] / param_bytes
    return results


def _threads_list(text: str) -> list[int]:
    counts = [int(t) for t in text.split(",") if t.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected thread counts such as 1,2, got {text!r}")
    return counts


def _p_list(text: str) -> list[float]:
    return [float(p) for p in text.split(",") if p.strip()]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=sorted(MODELS), default="resnet18", help="whose parameter shapes")
    parser.add_argument("--repetitions", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=_threads_list,
        default=None,
        help="torch CPU thread counts, interleaved in one run (default: 1,2 on the CPU, torch's on CUDA)",
    )
    parser.add_argument(
        "--p", type=_p_list, default=[2.0, 3.0, math.inf, 4.5], help="Stacey's p values (default: 2,3,inf,4.5)"
    )
    parser.add_argument(
        "--no-slow-paths",
        action="store_true",
        help="skip Stacey's foreach and plain paths, AdamW's for-loop and the published-style loop",
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1M / 11M / 100M sweep")
    parser.add_argument(
        "--no-spectral",
        action="store_true",
        help="skip the spectral rows (torch.optim.Muon's bfloat16 step takes minutes on a CPU at full size)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny shapes, 2 repetitions, no scaling: checks the script"
    )
    parser.add_argument(
        "--cuda-compile-options",
        type=json.loads,
        default=None,
        help="inductor options for the fused CUDA path, e.g. '{\"combo_kernels\": false}'",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="Markdown file (default: results/step_speed_DEVICE.md)"
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = [1, 2] if torch.device(args.device).type == "cpu" else [torch.get_num_threads()]
    if args.smoke:
        args.repetitions, args.warmup, args.no_scaling = 2, 1, True
    return args


def main(argv=None) -> str:
    """Run, print the report and write it to ``--output`` (keeping its "## Why" notes); return it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    if args.cuda_compile_options is not None:
        RUNTIME.cuda_compile_options = args.cuda_compile_options
    device = torch.device(args.device)
    output = args.output or RESULTS / f"step_speed_{device.type}.md"
    notes = ""
    if output.is_file() and f"\n{NOTES_HEADING}" in output.read_text(encoding="utf-8"):
        notes = output.read_text(encoding="utf-8").split(f"\n{NOTES_HEADING}", 1)[1]
    threads_before = torch.get_num_threads()
    load_before = os.getloadavg()
    try:
        lines = _measure_lines(args, device)
    finally:
        torch.set_num_threads(threads_before)  # in-process callers (the tests) get their setting back
    load_after = os.getloadavg()
    # The machine may be shared: the load average says how busy it was (2 cores: 2.0 is both busy).
    load = (
        f"Load average (1, 5, 15 minutes): {', '.join(f'{v:.2f}' for v in load_before)} at the start, "
        f"{', '.join(f'{v:.2f}' for v in load_after)} at the end ({os.cpu_count()} cores)."
    )
    body = "```\n" + "\n".join(lines) + "\n```\n\n" + load + (f"\n\n{SMOKE_NOTE}" if args.smoke else "")
    if notes:
        body += f"\n\n{NOTES_HEADING}{notes.rstrip()}"
    text = write_report(
        output, "Step speed: Stacey against torch's optimizers", command_line("step_speed.py", argv), body
    )
    print(text)
    return text


def _thread_label(count: int) -> str:
    return f"{count} thread{'s' if count > 1 else ''}"


def _measure_lines(args: argparse.Namespace, device: torch.device) -> list[str]:
    label, full_size, smoke_size = MODELS[args.model]
    label, shapes = (f"{label} (--smoke: tiny)", smoke_size()) if args.smoke else (label, full_size())
    threads = args.threads
    lines = [
        f"device {device}{' ' + torch.cuda.get_device_name() if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}, threads {' and '.join(map(str, threads))} (interleaved), "
        f"{label}: {len(shapes)} tensors, {sum(s.numel() for s in shapes) / 1e6:.1f}M parameters"
    ]
    print(lines[0], flush=True)
    table = optimizers(device, args.p, slow_paths=not args.no_slow_paths)
    results = measure(shapes, device, table, threads, args.repetitions, args.warmup)
    reference = results[REFERENCE]["median"]
    published = results.get(PUBLISHED, {}).get("median")
    adamw_fused = results.get("AdamW(fused)", {}).get("median")
    header = f"\n{'optimizer':30s}"
    for count in threads:
        header += f" | {_thread_label(count) + ': ms':>14s} {'x SGD':>6s}"
        header += f" {'x publ.':>8s}" if published else ""
        header += f" {'x AdamW fused':>14s}" if adamw_fused else ""
    header += f" | {'state/param':>11s} {'peak extra MiB':>14s} {'/param':>7s} {'first step s':>12s}"
    lines.append(header)
    for name, r in results.items():
        row = f"{name:30s}"
        for count in threads:
            median = r["median"][count]
            row += f" | {median * 1e3:14.2f} {median / reference[count]:6.2f}"
            row += f" {published[count] / median:7.1f}x" if published else ""
            row += f" {median / adamw_fused[count]:14.2f}" if adamw_fused else ""
        row += f" | {r['state_ratio']:11.2f} {r['peak_extra'] / 2**20:14.1f} {r['peak_ratio']:7.2f} {r['first']:12.2f}"
        lines.append(row)
    lines.append(
        f"\nms: median of {args.repetitions} interleaved steps; x SGD: step time / {REFERENCE} step time at the "
        "same thread count (lower is faster); x publ.: how many times faster than the published-style "
        "per-tensor loop with NaN checks; state/param and peak extra /param: bytes per parameter byte (peak "
        "extra on CPU: all bytes allocated during a step, an upper bound); first step: state creation plus, "
        f"for the default path, compiling (at {_thread_label(threads[0])}; on the CPU in float32, loading the C "
        "kernel, built once per machine and cached)."
    )
    stacey = [name for name in results if name.startswith("Stacey p=") and name.endswith(" default")]
    lines.append(f"\nStacey's default path against {REFERENCE}, same run (medians; in brackets the fastest steps'")
    lines.append("ratio, the one least disturbed by other work on a shared machine):")
    for count in threads:
        cells = []
        for name in stacey:
            median = results[name]["median"][count] / reference[count]
            fastest = min(results[name]["times"][count]) / min(results[REFERENCE]["times"][count])
            cells.append(f"{name.removeprefix('Stacey ').removesuffix(' default')} {median:.2f}x ({fastest:.2f}x)")
        lines.append(f"  {_thread_label(count) + ':':11s} {', '.join(cells)}")
    lines.append("The averaged point (average_decay 0.99) against the same step without it (medians):")
    for count in threads:
        cells = [
            f"{plain.removeprefix('Stacey ').removesuffix(' default')} "
            f"{results[averaged]['median'][count] / results[plain]['median'][count]:.2f}x"
            for averaged, plain in (("Stacey p=3 averaged", "Stacey p=3 default"),
                                    ("Stacey adam tau=0 averaged", "Stacey adam tau=0"))
            if plain in results
        ]  # fmt: skip
        lines.append(f"  {_thread_label(count) + ':':11s} {', '.join(cells)}")

    if not args.no_spectral:
        lines += _spectral_lines(shapes, device, threads, args)

    if not args.no_scaling:
        lines.append(f"\nScaling (median step ms; ratio to {REFERENCE} of the same size and thread count):")
        sweep_table = {
            name: make
            for name, make in table.items()
            if name in (REFERENCE, "Stacey p=3 default", "Stacey p=4.5 default")
        }
        for size_label, size_shapes in (
            ("1M", shapes_with_params(1_000_000)),
            (f"{label}", shapes),
            ("100M", shapes_with_params(100_000_000)),
        ):
            sweep = measure(size_shapes, device, sweep_table, threads, max(3, args.repetitions // 3), 1)
            for count in threads:
                sgd = sweep[REFERENCE]["median"][count]
                cells = ", ".join(
                    f"{n} {r['median'][count] * 1e3:.2f} ms ({r['median'][count] / sgd:.2f}x)" for n, r in sweep.items()
                )
                params = sum(s.numel() for s in size_shapes) / 1e6
                lines.append(f"  {size_label:16s} {params:6.1f}M params, {_thread_label(count):9s}: {cells}")
    return lines


def _spectral_lines(shapes, device, threads: list[int], args: argparse.Namespace) -> list[str]:
    """Stacey's spectral step against torch.optim.Muon's (match_rms_adamw, its own bfloat16 Newton-Schulz) on
    the model's tensors of two dimensions or more, each viewed as (shape[0], -1): Muon takes matrices only."""
    matrices = [torch.Size((s[0], math.prod(s[1:]))) for s in shapes if len(s) >= 2]
    table = {
        MUON: lambda params: torch.optim.Muon(params, lr=1e-3, adjust_lr_fn="match_rms_adamw"),
        "Stacey spectral default": lambda params: Stacey(params, norm="spectral", tau=0.0),
        "Stacey spectral tau=0.01": lambda params: Stacey(params, norm="spectral", tau=0.01),
        "Stacey spectral averaged": lambda params: Stacey(params, norm="spectral", tau=0.0, average_decay=0.99),
        # torch's Muon's precision: its speed where the CPU multiplies bfloat16 natively.
        "Stacey spectral bfloat16": lambda params: Stacey(params, norm="spectral", tau=0.0, ns_dtype="bfloat16"),
        "Stacey spectral plain loop": lambda params: Stacey(params, norm="spectral", tau=0.0, foreach=False),
    }
    results = measure(matrices, device, table, threads, args.repetitions, args.warmup)
    muon = results[MUON]
    size = f"{len(matrices)} matrices, {sum(m.numel() for m in matrices) / 1e6:.1f}M parameters"
    precision = str(ns_precision(torch.empty(0, device=device))).removeprefix("torch.")
    lines = [
        f"\nSpectral norm: {size}, Stacey's Newton-Schulz by default in {precision} on this {device.type} (median ms; "
        f"ratio to {MUON}, same thread count; fastest steps' ratio):"
    ]
    for count in threads:
        cells = [
            f"{name} {r['median'][count] * 1e3:.2f} ms ({r['median'][count] / muon['median'][count]:.2f}x, "
            f"{min(r['times'][count]) / min(muon['times'][count]):.2f}x)"
            for name, r in results.items()
        ]
        lines.append(f"  {_thread_label(count) + ':':11s} {'; '.join(cells)}")
    return lines


if __name__ == "__main__":
    main()
