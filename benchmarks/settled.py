"""What ranks a trial on a noisy metric: its final value, or the mean of its last epochs (study.confirm).

A study ranks its candidates on one seed each. On a metric whose last epochs only move up and down
(digits' val_acc: a few of 359 images), the final epoch's value carries that epoch's noise, and the
mean of the run's last quarter of epochs may estimate what the config gives on other seeds better.
Where the metric still improves every epoch, that mean lags behind the final value. This script
measures both on a task's anchor configs: a study of ``--configs`` anchors (no pruning, no
confirmation), then every anchor's config trained on ``--seeds`` seeds (``stacey-compare``, seed s is
the trial's own run on seed s). Per run, each statistic is taken as an estimate of the config's mean
final value over the *other* seeds; reported: its rms error, its bias, how often the one-seed statistic
ranks first the config whose mean final is best, and what ``study.confirm.curves_settled`` says of
each seed's curves (the study's own view: the rule that picks the tail mean or the final value).

    python benchmarks/settled.py                        # digits, 4 anchors x 8 seeds (about 2 minutes)
    python benchmarks/settled.py --tasks textlm --seeds 4   # a language model (about 12 minutes)
    python benchmarks/settled.py --smoke                # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

from _report import add_threads_argument, add_workdir_argument, run_benchmark, task_list
from quality import run_settings

from stacey_lightning.attributes import ANCHOR, TASK_PARAMS
from stacey_lightning.compare import compare
from stacey_lightning.compare.outputs import read_curves
from stacey_lightning.study.confirm import curves_settled, tail
from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import tune
from stacey_lightning.tuner.trial import trial_options

RESULTS = Path(__file__).resolve().parent / "results" / "settled.md"
TASKS = ("digits", "textlm")  # as benchmarks/quality.py trains them (its TASKS: options and epochs)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument("--configs", type=int, default=4, help="anchors trained (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=8, help="seeds per config (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    add_workdir_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="2 configs, 3 seeds, 4 epochs of 2 batches")
    arguments = parser.parse_args(argv)
    arguments.tasks = task_list(parser, arguments.tasks, TASKS)
    if arguments.configs < 2 or arguments.seeds < 3:
        parser.error("--configs must be at least 2 and --seeds at least 3 (one seed against two others)")
    if arguments.smoke:
        arguments.configs, arguments.seeds = 2, 3
    return arguments


def measure(arguments: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    results = []
    for name in arguments.tasks:
        options, max_epochs, trainer_kwargs = run_settings(name, arguments.smoke, smoke_epochs=4)
        study = tune(name, n_trials=arguments.configs, max_epochs=max_epochs, pruner="none",
                     confirm=False, output_dir=workdir / name / "study", task_options=options,
                     trainer_kwargs=trainer_kwargs)  # fmt: skip
        configs = []
        for trial in study.get_trials(deepcopy=False):
            config = dict(trial_options(trial))
            if trial.user_attrs.get(TASK_PARAMS):
                config["task"] = dict(trial.user_attrs[TASK_PARAMS])
            comparison = compare(
                name, ["stacey"], arguments.seeds, max_epochs=max_epochs, config=config,
                output_dir=workdir / name / f"trial{trial.number}", trainer_kwargs=trainer_kwargs,
                task_options=options,
            )  # fmt: skip
            curves = [
                read_curves(run.run_dir, run.clock_steps, run.clock_elapsed, comparison.monitor).metric.tolist()
                for run in sorted(comparison.runs, key=lambda run: run.seed)
            ]
            configs.append({"name": trial.user_attrs.get(ANCHOR, f"trial {trial.number}"), "curves": curves})
            print(f"[settled] {name}: {configs[-1]['name']}: finals {[round(c[-1], 4) for c in curves]}", flush=True)
        direction = resolve_task(name).direction
        results.append({"name": name, "monitor": comparison.monitor, "maximize": direction == "maximize",
                        "max_epochs": max_epochs, "configs": configs})  # fmt: skip
    (workdir / "curves.json").write_text(json.dumps(results))
    return results


def estimates(configs: list[dict[str, Any]], statistic) -> tuple[float, float]:
    """rms error and bias of ``statistic(curve)`` as an estimate of the config's mean final over the other seeds."""
    errors = []
    for config in configs:
        finals = [curve[-1] for curve in config["curves"]]
        for seed, curve in enumerate(config["curves"]):
            others = statistics.fmean(finals[:seed] + finals[seed + 1 :])
            errors.append(statistic(curve) - others)
    return math.sqrt(statistics.fmean(error**2 for error in errors)), statistics.fmean(errors)


def picks_best(configs: list[dict[str, Any]], statistic, maximize: bool) -> tuple[int, int]:
    """On how many seeds the config ranked first by ``statistic`` is the one with the best mean final."""
    sign = 1.0 if maximize else -1.0
    best = max(range(len(configs)), key=lambda i: sign * statistics.fmean(c[-1] for c in configs[i]["curves"]))
    seeds = min(len(config["curves"]) for config in configs)
    right = sum(
        max(range(len(configs)), key=lambda i: sign * statistic(configs[i]["curves"][seed])) == best
        for seed in range(seeds)
    )
    return right, seeds


def _final(curve: list[float]) -> float:
    return curve[-1]


def _tail_mean(curve: list[float]) -> float:
    return statistics.fmean(tail(curve) or curve[-1:])


def render(arguments: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        configs, monitor, maximize = result["configs"], result["monitor"], result["maximize"]
        count = len(tail([0.0] * result["max_epochs"])) or 1
        # The rule as a study applies it: on one seed's curves at a time.
        settled = [curves_settled(list(curves)) for curves in zip(*(config["curves"] for config in configs))]
        lines += [
            f"## {result['name']}: {monitor} ({'higher' if maximize else 'lower'} is better), "
            f"{result['max_epochs']} epochs, {arguments.seeds} seeds per config",
            "",
            f"| config | final {monitor} (mean ± std over seeds) | mean of the last {count} epochs (mean ± std) |",
            "|---|---|---|",
        ]
        for config in configs:
            finals = [curve[-1] for curve in config["curves"]]
            tails = [_tail_mean(curve) for curve in config["curves"]]
            lines.append(f"| {config['name']} | {_spread(finals)} | {_spread(tails)} |")
        lines += [
            "",
            "| one seed's statistic | rms error against the mean final of the other seeds | bias | "
            "ranks the best config first |",
            "|---|---|---|---|",
        ]
        for label, statistic in (("final value", _final), (f"mean of the last {count} epochs", _tail_mean)):
            rms, bias = estimates(configs, statistic)
            right, seeds = picks_best(configs, statistic, maximize)
            lines.append(f"| {label} | {rms:.4f} | {bias:+.4f} | {right} of {seeds} seeds |")
        lines += [
            "",
            "The study's rule (`study.confirm.curves_settled`) on each seed's curves, what a study has when it ranks: "
            f"**settled on {sum(settled)} of {len(settled)} seeds** (the mean of the last epochs ranks there, the "
            "final value on the others).",
            "",
        ]
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    title = "What ranks a trial on a noisy metric: its final value or its last epochs' mean"
    return run_benchmark("settled.py", title, argv, parse_arguments, measure, render)


if __name__ == "__main__":
    main()
