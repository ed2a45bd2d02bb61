"""The spectral direction of a weight that stacks k maps (an LSTM's 4 gates, a GRU's 3, attention's q, k, v):
each map's own (Stacey's ``blocks``, float32 on the CPU) against the stacked matrix whole, Stacey's float32 and
torch's Muon's bfloat16 (what torch.optim.Muon computes for it), at 1 and 2 threads, interleaved, medians.

    python benchmarks/stacked_maps.py [--sizes 128,512,768] [--repetitions 9]

Columns: ``per map`` ``spectral_direction(c, blocks=k)`` as the step takes it (one block at a time on the CPU);
``per map, batched`` the same k blocks as one batched Newton-Schulz (what an accelerator does); ``whole``
``spectral_direction(c)``, the stacked matrix's own direction in float32 (the Gram form where it is wide);
``torch bf16`` torch.optim.Muon's iteration on the whole matrix. The ratios are against torch's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from functools import partial
from pathlib import Path

import torch
from _report import add_timing_arguments, command_line, interleaved_times, write_report
from torch.optim._muon import _zeropower_via_newtonschulz

from stacey_lightning.optim._spectral import NS_COEFFICIENTS, NS_STEPS, newton_schulz, rms_scale, spectral_direction

RESULTS = Path(__file__).resolve().parent / "results" / "stacked_maps_cpu.md"
# (name, maps, rows per map / size, cols / size): the stacked weights of torch's modules at width `size`.
LAYOUTS = (
    ("attention in_proj (3d x d)", 3, 1, 1),
    ("LSTM weight_hh (4h x h)", 4, 1, 1),
    ("GRU weight_hh (3h x h)", 3, 1, 1),
)
FORMS = {
    "per map": lambda c, k: spectral_direction(c, blocks=k),
    "per map, batched": lambda c, k: newton_schulz(c.view(k, -1, c.shape[1]), scale=rms_scale(c.shape, k)),
    "whole": lambda c, k: spectral_direction(c),
    "torch bf16": lambda c, k: _zeropower_via_newtonschulz(c, NS_COEFFICIENTS, NS_STEPS, 1e-7),
}


def timings(cases, threads: list[int], repetitions: int) -> dict[tuple, list[float]]:
    """Seconds per call of every form on every case at every thread count, ``{(threads, (case, form)): [...]}``,
    interleaved (``interleaved_times``)."""
    matrices = {case: torch.randn(case[1] * case[2], case[3]) for case in cases}
    calls = {
        (case, name): partial(form, c, case[1]) for case, c in matrices.items() for name, form in FORMS.items()
    }  # fmt: skip
    return interleaved_times(calls, threads, repetitions)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")], default=[128, 512, 768])
    add_timing_arguments(parser, RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    cases = [(name, maps, rows * size, cols * size) for size in args.sizes for name, maps, rows, cols in LAYOUTS]
    times = timings(cases, args.threads, args.repetitions)
    columns = " | ".join(f"{name} ms" for name in FORMS)
    header = "| weight | shape | " + " | ".join(
        f"{count} thread{'s' if count > 1 else ''}: {columns} | per map / torch | whole / torch"
        for count in args.threads
    )
    lines = [header + " |", "|---" * (2 + (len(FORMS) + 2) * len(args.threads)) + "|"]
    for case in cases:
        name, maps, rows, cols = case
        cells = [name, f"{maps * rows} x {cols}"]
        for count in args.threads:
            ms = {form: statistics.median(times[(count, (case, form))]) * 1e3 for form in FORMS}
            cells += [f"{ms[form]:.3g}" for form in FORMS]
            cells += [f"{ms['per map'] / ms['torch bf16']:.2f}x", f"{ms['whole'] / ms['torch bf16']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    body = "\n".join([f"Medians of {args.repetitions} interleaved calls.", "", *lines])
    title = "The spectral direction of stacked maps: each map's against the stacked matrix's and torch's Muon's"
    text = write_report(args.output, title, command_line("stacked_maps.py", argv), body)
    print(text)
    return text


if __name__ == "__main__":
    main()
