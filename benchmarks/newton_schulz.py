"""Where the Gram form of Newton-Schulz pays: the spectral direction's two float32 forms against torch's Muon's
bfloat16 iteration, by the matrix's aspect (cols / rows of its wide form), at 1 and 2 threads, interleaved; and
each form's error against float64 on a momentum-like matrix.

    python benchmarks/newton_schulz.py [--rows 256,768] [--aspects 1,1.5,2,3,4.5,9] [--repetitions 9]

Forms (stacey_lightning/optim/_spectral.py): ``direct`` Muon's iteration, X <- a X + (b A + c A^2) X with
A = X X^T, in float32; ``gram`` the same iterates run on A alone, X multiplied once at the end, in float32;
``torch bf16`` torch.optim.Muon's own iteration in bfloat16. The rule the step follows (``GRAM_ASPECT``)
takes the Gram form from the aspect where it is no slower than the direct one. Errors: relative Frobenius
distance to the direct form in float64, on a matrix whose singular values fall from 1 to 1e-6.
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

from stacey_lightning.optim._spectral import GRAM_ASPECT, NS_COEFFICIENTS, NS_STEPS, newton_schulz

RESULTS = Path(__file__).resolve().parent / "results" / "newton_schulz_cpu.md"
FORMS = {
    "direct": lambda c: newton_schulz(c, dtype=torch.float32, gram=False),
    "gram": lambda c: newton_schulz(c, dtype=torch.float32, gram=True),
    "torch bf16": lambda c: _zeropower_via_newtonschulz(c, NS_COEFFICIENTS, NS_STEPS, 1e-7),
}


def spread_spectrum(rows: int, cols: int) -> torch.Tensor:
    """A float64 matrix with singular values from 1 down to 1e-6: a few large and many small, as a momentum's."""
    generator = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(rows, rows, generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, rows, generator=generator, dtype=torch.float64))
    return (u * torch.logspace(0, -6, rows, dtype=torch.float64)) @ v.T


def errors(rows: int, cols: int) -> dict[str, float]:
    c = spread_spectrum(rows, cols)
    reference = newton_schulz(c, gram=False)
    return {
        name: ((form(c.float()).double() - reference).norm() / reference.norm()).item() for name, form in FORMS.items()
    }


def timings(shapes, threads: list[int], repetitions: int) -> dict[tuple, list[float]]:
    """Seconds per call of every form on every shape at every thread count, ``{(threads, (shape, form)): [...]}``,
    interleaved (``interleaved_times``)."""
    matrices = {shape: torch.randn(shape) for shape in shapes}
    calls = {(shape, name): partial(form, c) for shape, c in matrices.items() for name, form in FORMS.items()}
    return interleaved_times(calls, threads, repetitions)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=lambda t: [int(x) for x in _floats(t)], default=[256, 768])
    parser.add_argument("--aspects", type=_floats, default=[1, 1.5, 2, 3, 4.5, 9])
    add_timing_arguments(parser, RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    shapes = [(rows, round(rows * aspect)) for rows in args.rows for aspect in args.aspects]
    times = timings(shapes, args.threads, args.repetitions)
    header = "| rows x cols | aspect | " + " | ".join(
        f"{count} thread{'s' if count > 1 else ''}: direct ms | gram ms | torch bf16 ms | gram / direct | gram / torch"
        for count in args.threads
    )
    lines = [header + " |", "|---" * (2 + 5 * len(args.threads)) + "|"]
    for shape in shapes:
        cells = [f"{shape[0]} x {shape[1]}", f"{shape[1] / shape[0]:g}"]
        for count in args.threads:
            ms = {name: statistics.median(times[(count, (shape, name))]) * 1e3 for name in FORMS}
            cells += [f"{ms[name]:.3g}" for name in FORMS]
            cells += [f"{ms['gram'] / ms['direct']:.2f}x", f"{ms['gram'] / ms['torch bf16']:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    error_rows, error_cols = 256, 2304
    error = errors(error_rows, error_cols)
    body = "\n".join([
        f"Medians of {args.repetitions} interleaved calls; the step takes the Gram form from aspect {GRAM_ASPECT:g}"
        " (`GRAM_ASPECT`) in float32 and wider.",
        "",
        *lines,
        "",
        f"Error against the direct form in float64 ({error_rows} x {error_cols}, singular values 1 to 1e-6): "
        + ", ".join(f"{name} {value:.1e}" for name, value in error.items()),
    ])  # fmt: skip
    title = "Newton-Schulz: the direct and Gram forms in float32 against torch's Muon's bfloat16"
    text = write_report(args.output, title, command_line("newton_schulz.py", argv), body)
    print(text)
    return text


if __name__ == "__main__":
    main()
