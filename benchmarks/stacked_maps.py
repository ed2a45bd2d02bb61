"""The spectral direction of a weight that stacks k maps (an LSTM's 4 gates, a GRU's 3, attention's q, k, v):
each map's own (Stacey's ``blocks``, float32 on the CPU) against the stacked matrix whole, Stacey's float32 and
torch's Muon's bfloat16 (what torch.optim.Muon computes for it), at 1 and 2 threads, interleaved, medians.

    python benchmarks/stacked_maps.py [--sizes 128,512,768] [--models gru,lstm] [--repetitions 9]

Columns: ``maps one at a time`` and ``maps batched``, ``spectral_direction(c, blocks=k, batched=...)``: the step
batches them on the CPU where no side of a block exceeds ``CPU_BATCH_SIDE``, one at a time beyond (and always
batches on an accelerator); ``whole`` ``spectral_direction(c)``, the stacked matrix's own direction in float32 (the
Gram form where it is wide); ``torch bf16`` torch.optim.Muon's iteration on the whole matrix. The ratios are
against torch's; ``step's / torch`` is the form the step takes.

Then whole optimizer steps on models with stacked weights (``--models``, random gradients): Stacey at
its Muon-like point (spectral matrices, Adam's norm elsewhere, tau = 0) with the mixin's groups, each stacked weight
as its maps (``per map``) and whole (``whole``), against the peer ``muon`` (torch's Muon and AdamW) on the same
groups.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from _report import add_timing_arguments, command_line, interleaved_times, write_report
from torch import nn
from torch.optim._muon import _zeropower_via_newtonschulz

from stacey_lightning.optim._spectral import CPU_BATCH_SIDE, NS_COEFFICIENTS, NS_STEPS, spectral_direction

RESULTS = Path(__file__).resolve().parent / "results" / "stacked_maps_cpu.md"
# (name, maps, rows per map / size, cols / size): the stacked weights of torch's modules at width `size`.
LAYOUTS = (
    ("attention in_proj (3d x d)", 3, 1, 1),
    ("LSTM weight_hh (4h x h)", 4, 1, 1),
    ("GRU weight_hh (3h x h)", 3, 1, 1),
)
STEPS = ("per map", "whole", "torch muon")
FORMS = {
    "maps one at a time": lambda c, k: spectral_direction(c, blocks=k, batched=False),
    "maps batched": lambda c, k: spectral_direction(c, blocks=k, batched=True),
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


# Stacey's Muon-like point (search/anchors.py): Muon's geometry and momentum at tau = 0.
MUON_LIKE = {"norm": "adam", "kinds": {"matrix": {"norm": "spectral"}}, "tau": 0.0, "betas": [0.9025, 0.95]}


def models() -> dict[str, Callable[[], nn.Module]]:
    """The models whose steps are timed, at the sizes of the suite's stdlib-gru and recall-lstm: an embedding, one
    recurrent layer (its two weights stacked gates), a head."""
    return {
        "gru": lambda: nn.ModuleList([nn.Embedding(256, 64), nn.GRU(64, 128), nn.Linear(128, 256)]),
        "lstm": lambda: nn.ModuleList([nn.Embedding(32, 32), nn.LSTM(32, 128), nn.Linear(128, 16)]),
    }


def step_calls(model: nn.Module) -> dict[str, Callable[[], object]]:
    """One optimizer step of each optimizer on ``model``, its gradients drawn once."""
    from stacey_lightning.lightning.config import StaceyConfig
    from stacey_lightning.lightning.param_groups import baseline_param_groups, param_groups
    from stacey_lightning.optim import Stacey
    from stacey_lightning.optim.muon_with_adamw import MuonWithAdamW

    generator = torch.Generator().manual_seed(0)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator) * 1e-2
    config = StaceyConfig.from_source(MUON_LIKE)
    optimizers = {
        "per map": Stacey(param_groups(model, config), **config.optimizer_arguments()),
        "whole": Stacey(param_groups(model, config, stacked={}), **config.optimizer_arguments()),
        "torch muon": MuonWithAdamW(baseline_param_groups(model, 0.01, head_apart=True)),
    }
    return {name: optimizer.step for name, optimizer in optimizers.items()}


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")], default=[128, 512, 768])
    parser.add_argument("--models", type=lambda t: [x for x in t.split(",") if x], default=list(models()))
    add_timing_arguments(parser, RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    cases = [(name, maps, rows * size, cols * size) for size in args.sizes for name, maps, rows, cols in LAYOUTS]
    times = timings(cases, args.threads, args.repetitions)
    columns = " | ".join(f"{name} ms" for name in FORMS)
    header = "| weight | shape | " + " | ".join(
        f"{count} thread{'s' if count > 1 else ''}: {columns} | step's / torch | whole / torch"
        for count in args.threads
    )
    lines = [header + " |", "|---" * (2 + (len(FORMS) + 2) * len(args.threads)) + "|"]
    for case in cases:
        name, maps, rows, cols = case
        cells = [name, f"{maps * rows} x {cols}"]
        for count in args.threads:
            ms = {form: statistics.median(times[(count, (case, form))]) * 1e3 for form in FORMS}
            cells += [f"{ms[form]:.3g}" for form in FORMS]
            step = ms["maps batched" if max(rows, cols) <= CPU_BATCH_SIDE else "maps one at a time"]
            cells += [f"{step / ms['torch bf16']:.2f}x", f"{ms['whole'] / ms['torch bf16']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    built = models()
    steps = {(model, name): call for model in args.models for name, call in step_calls(built[model]()).items()}
    step_times = interleaved_times(steps, args.threads, args.repetitions)
    step_lines = [
        "| model | " + " | ".join(
            f"{count} thread{'s' if count > 1 else ''}: per map ms | whole ms | torch muon ms | per map / whole | "
            "per map / torch" for count in args.threads
        ) + " |",
        "|---" * (1 + 5 * len(args.threads)) + "|",
    ]  # fmt: skip
    for model in args.models:
        cells = [model]
        for count in args.threads:
            ms = {name: statistics.median(step_times[(count, (model, name))]) * 1e3 for name in STEPS}
            cells += [f"{ms[name]:.3g}" for name in STEPS]
            cells += [f"{ms['per map'] / ms['whole']:.2f}x", f"{ms['per map'] / ms['torch muon']:.2f}x"]
        step_lines.append("| " + " | ".join(cells) + " |")
    body = "\n".join([
        f"Medians of {args.repetitions} interleaved calls.", "", "The direction of one stacked weight:", "", *lines, "",
        "Whole optimizer steps (Stacey's Muon-like point, the peer `muon`):", "", *step_lines,
    ])  # fmt: skip
    title = "The spectral direction of stacked maps: each map's against the stacked matrix's and torch's Muon's"
    text = write_report(args.output, title, command_line("stacked_maps.py", argv), body)
    print(text)
    return text


if __name__ == "__main__":
    main()
