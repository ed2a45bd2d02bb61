"""What Newton-Schulz's form and precision alone do to a trained model: each development workload's winner
retrained on seeds 0-2 with the spectral direction computed each way named, the code otherwise the same. It
checked the Gram form in float32 (benchmarks/results/step_speed_spectral_cpu_round11.md) as round 10's runs
checked bfloat16 (step_speed_spectral_cpu_round10b.md).

    python -m benchmarks.suite.ns_forms --runs WORKDIR --workloads stdlib-gru,recall-transformer
    python -m benchmarks.suite.ns_forms --config best.yaml --workloads cancer-mlp --forms default,float64

``--runs``: a suite run's workdir (``python -m benchmarks.suite --run --workdir WORKDIR``), whose studies at
``--budget`` runs gave the winners; ``--config``: one config for every workload named. Forms: ``default`` (float32
on the CPU, the Gram form where the matrix is wide), ``direct`` (float32, Muon's direct iteration on every
matrix), ``float64`` (the direct iteration in float64: a control more precise than both), ``bfloat16`` (torch's
Muon's precision). They are forced by setting what the step reads, ``_spectral.GRAM_ASPECT`` and
``_spectral.ns_precision``, for the runs of that form only.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

from benchmarks.suite.registry import DEV, select
from benchmarks.suite.run import train_config

FORMS = ("default", "direct", "float64", "bfloat16")


@contextlib.contextmanager
def ns_form(form: str) -> Iterator[None]:
    """Within the block every spectral direction is computed as ``form`` says (see the module's notes)."""
    import torch

    from stacey_lightning.optim import _spectral

    saved = _spectral.GRAM_ASPECT, _spectral.ns_precision
    precision = {"float64": torch.float64, "bfloat16": torch.bfloat16}.get(form)
    if form in ("direct", "float64"):
        _spectral.GRAM_ASPECT = math.inf
    if precision is not None:
        _spectral.ns_precision = lambda tensor, pinned=None: precision
    try:
        yield
    finally:
        _spectral.GRAM_ASPECT, _spectral.ns_precision = saved


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", required=True, help="comma-separated dev workloads")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", type=Path, help="a suite run's workdir: each workload's Stacey winner there")
    source.add_argument("--config", type=Path, help="one config file for every workload")
    parser.add_argument("--budget", type=int, default=8, help="the winners' budget in --runs (default: 8)")
    parser.add_argument("--forms", default="default,direct", help=f"comma-separated, of {', '.join(FORMS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 to N-1 (default: 3)")
    arguments = parser.parse_args(argv)
    forms = arguments.forms.split(",")
    unknown = set(forms) - set(FORMS)
    if unknown:
        parser.error(f"--forms: unknown {', '.join(sorted(unknown))} (choose from {', '.join(FORMS)})")
    import torch

    torch.set_num_threads(1)
    for workload in select(DEV, arguments.workloads.split(",")):
        config = arguments.config or (
            arguments.runs / "full-study-seed-0" / workload.name / f"budget-{arguments.budget}" / "stacey" / "tuning"
            / "stacey" / "best.yaml"
        )  # fmt: skip
        if not config.is_file():
            parser.error(f"--runs: no winner at {config}")
        for form in forms:  # one workload's forms one after another: the machine's load hits them alike
            with ns_form(form):
                values = train_config(workload, config, range(arguments.seeds))
            print(f"{workload.name} {form}: {workload.monitor} {sum(values) / len(values):.4f} "
                  f"({', '.join(f'{value:.4f}' for value in values)})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
