"""The geometry finder against the tuned study: is ``stacey-find``'s pick, found within 1.5 runs of optimizer
steps, as good as what a 24-trial study found (benchmarks/results/quality.md as of commit f814d00)?

Per task: ``find_for_task`` (what ``stacey-find`` does) with seed 0, counting the optimizer steps it spent
against its budget of 1.5 runs, then its ``best.yaml`` trained for the full epochs over ``--seeds`` seeds by
``compare(config=best.yaml)`` (what ``stacey-compare --config`` does), against the 24-trial study's retrained
best on the same task settings and seeds.

    python benchmarks/finder.py                   # digits and textlm, 3 seeds
    python benchmarks/finder.py --tasks textlm --seeds 2
    python benchmarks/finder.py --smoke           # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from _report import add_threads_argument, run_benchmark, task_list

from stacey_lightning.compare import compare
from stacey_lightning.compare.results import summarize
from stacey_lightning.tuner.finder import find_for_task
from stacey_lightning.tuner.outputs import quiet_libraries

RESULTS = Path(__file__).resolve().parent / "results" / "finder.md"
# The task settings of benchmarks/quality.py, and the 24-trial study's Stacey there (final metric, mean ± std
# over seeds 0-2, retrained at the study's best config), with the done-when margin of issue 15.
TASKS = {
    "digits": {"task": "digits", "options": {"foreach": True}, "max_epochs": 10,
               "study": (0.9759, 0.0098), "margin": 0.005},
    "textlm": {"task": "textlm", "options": {"foreach": True, "batch_size": 16, "max_chars": 60_000}, "max_epochs": 5,
               "study": (2.8024, 0.0655), "margin": 0.03},
}  # fmt: skip
SMOKE_OPTIONS = {"width": 16, "depth": 1, "heads": 2, "context": 16, "max_chars": 2_000}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits,textlm", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeded full runs of the pick (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (1 epoch of 4 batches, 1 seed)")
    arguments = parser.parse_args(argv)
    arguments.tasks = task_list(parser, arguments.tasks, TASKS)
    if arguments.smoke:
        arguments.seeds = 1
    return arguments


def measure(arguments: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results, load = [], [os.getloadavg()[0]]
    for name in arguments.tasks:
        settings = TASKS[name]
        options, max_epochs, trainer_kwargs = dict(settings["options"]), settings["max_epochs"], {}
        if arguments.smoke:
            options.update(SMOKE_OPTIONS if settings["task"] == "textlm" else {})
            max_epochs, trainer_kwargs = 1, {"limit_train_batches": 4, "limit_val_batches": 2}
        started = time.perf_counter()
        say = lambda line, name=name: print(f"[finder] {name}: {line}", flush=True)  # noqa: E731
        with quiet_libraries():
            found, written = find_for_task(
                settings["task"], max_epochs=max_epochs, task_options=options, trainer_kwargs=trainer_kwargs,
                output_dir=workdir / name, progress=say,
            )  # fmt: skip
        seconds = time.perf_counter() - started
        figure = arguments.output.parent / f"finder_{name}.png"
        shutil.copyfile(written["finder.png"], figure)
        comparison = compare(
            settings["task"], ["stacey"], arguments.seeds, max_epochs=max_epochs, config=written["best.yaml"],
            output_dir=workdir / f"{name}-runs", trainer_kwargs=trainer_kwargs, task_options=options,
            progress=say,
        )  # fmt: skip
        finals = summarize([run.final_metric for run in comparison.runs])
        per_seed = [run.final_metric for run in comparison.runs]
        results.append({"name": name, "settings": settings, "options": options, "max_epochs": max_epochs,
                        "found": found, "seconds": seconds, "finals": finals, "per_seed": per_seed,
                        "monitor": comparison.monitor, "figure": figure.name})  # fmt: skip
        load.append(os.getloadavg()[0])
    return {"results": results, "load": load}


def render(arguments: argparse.Namespace, measured: dict[str, Any]) -> str:
    lines = [
        f"Load (1-minute average) at the start and after each task: {', '.join(f'{v:.1f}' for v in measured['load'])}.",
        "",
        "## Summary",
        "",
        "| task | pick | optimizer steps used / budget (1.5 runs) | finder time (s) | final metric of the pick "
        f"(mean ± std, {arguments.seeds} seeds) | per seed | 24-trial study (quality.md at f814d00) | pick - study | "
        "target met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sections = []
    for result in measured["results"]:
        found, finals, settings = result["found"], result["finals"], result["settings"]
        study, _ = settings["study"]
        maximize = result["monitor"] == "val_acc"
        gap = finals.mean - study
        met = (gap >= -settings["margin"]) if maximize else (gap <= settings["margin"])
        p = "inf" if found.p == float("inf") else f"{found.p:g}"
        pick = f"p {p}, lr {found.lr:.3g}, tau_horizon {found.config.tau_horizon:g}, alpha 0"
        seeds = " / ".join(f"{value:.4f}" for value in result["per_seed"])
        lines.append(
            f"| {result['name']} ({result['monitor']}) | {pick} | {found.steps_used} / {found.budget} | "
            f"{result['seconds']:.0f} | {finals.text()} | {seeds} | {study:.4f} ± {settings['study'][1]:.4f} | "
            f"{gap:+.4f} | {'yes' if met else 'no'} (within {settings['margin']:g}) |"
        )
        sections += [
            "",
            f"## {result['name']}: what the finder saw",
            "",
            f"Task options `{json.dumps(result['options'])}`, {result['max_epochs']} epochs, finder seed 0. "
            f"Figure: `{result['figure']}`.",
            "",
            found.table(),
        ]
    sections += [
        "",
        "## How it was measured",
        "",
        "`stacey_lightning.tuner.finder.find_for_task` (= `stacey-find`) with its defaults (candidates p 3, 4, 8, "
        "inf; budget 1.5 runs), then its best.yaml trained by `compare(config=best.yaml)` (= `stacey-compare "
        "--config`) for the full epochs with seeds 0.., against the Stacey row of the 24-trial study in "
        "benchmarks/results/quality.md (same task options, epochs and seeds; 24 trials of up to 10 or 5 epochs "
        "each). The finder's steps are optimizer steps, counted over every short run; its validation passes "
        "(one after each confirmation run) take no optimizer step.",
    ]
    return "\n".join(lines + sections)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    title = "Geometry finder: stacey-find's pick in 1.5 runs against a 24-trial study"
    return run_benchmark("finder.py", title, argv, parse_arguments, measure, render)


if __name__ == "__main__":
    main()
