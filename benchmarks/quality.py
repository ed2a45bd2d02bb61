"""Final quality of tuned Stacey against the optimizers a user would pick (AdamW, SGD with momentum, Lion; Muon
and Schedule-Free with --optimizers), each tuned with the same budget.

A thin call to ``stacey_lightning.compare.compare(..., n_trials=N)`` (what ``stacey-compare
--tune-trials N`` does) per task and budget: every optimizer is tuned with the same number of trials,
sampler, pruner and epochs per trial, each from its own anchor points (Stacey on the task's preset,
each baseline on its ``baselines`` preset entry), then retrained at its best configuration with
``--seeds`` seeds (the same initial weights and batch order per seed for every optimizer).

Reported per task and budget: each optimizer's final metric (mean ± sample std over seeds), its tuned
configuration, the tuning budget spent (trials by state, epochs) and its best tuning trial.

    python benchmarks/quality.py                              # digits and textlm at 12 and 24 trials
    python benchmarks/quality.py --budgets 4,8,16             # equal budgets of 4, 8, 16 full runs (epochs)
    python benchmarks/quality.py --tasks textlm-long --trials 24   # the longer textlm
    python benchmarks/quality.py --workdir runs/quality          # keeps the studies: a killed run resumes
    python benchmarks/quality.py --smoke                      # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from _report import add_threads_argument, add_workdir_argument, run_benchmark, task_list

from stacey_lightning.baselines import DEFAULT_OPTIMIZERS
from stacey_lightning.compare import compare
from stacey_lightning.compare.results import summarize
from stacey_lightning.tasks import resolve_task

RESULTS = Path(__file__).resolve().parent / "results" / "quality.md"
# Per benchmark task: the built-in task, its make() options and epochs. textlm is cut to fit a 2-core CPU:
# the small model on 60 KB of the corpus, batches of 16 windows of 64 bytes; textlm-long trains on
# 200 KB for 8 epochs, nearer convergence.
TASKS = {
    "digits": {"task": "digits", "options": {"foreach": True}, "max_epochs": 10},
    "textlm": {"task": "textlm", "options": {"foreach": True, "batch_size": 16, "max_chars": 60_000}, "max_epochs": 5},
    "textlm-long": {
        "task": "textlm",
        "options": {"foreach": True, "batch_size": 16, "max_chars": 200_000},
        "max_epochs": 8,
    },
}
SMOKE_OPTIONS = {"width": 16, "depth": 1, "heads": 2, "context": 16, "max_chars": 2_000}


def run_settings(name: str, smoke: bool, smoke_epochs: int = 1) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """Task ``name``'s make() options, epochs and Trainer arguments; with ``smoke``, a tiny model and
    ``smoke_epochs`` epochs of 2 batches."""
    settings = TASKS[name]
    options, max_epochs, trainer_kwargs = dict(settings["options"]), settings["max_epochs"], {}
    if smoke:
        options.update(SMOKE_OPTIONS if settings["task"] == "textlm" else {})
        max_epochs, trainer_kwargs = smoke_epochs, {"limit_train_batches": 2, "limit_val_batches": 1}
    return options, max_epochs, trainer_kwargs


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits,textlm", help=f"comma-separated, of {', '.join(TASKS)}")
    parser.add_argument(
        "--trials", default=None, help="tuning budgets, trials per optimizer (default: 12,24 unless --budgets is given)"
    )
    parser.add_argument("--budgets", default="", help="tuning budgets in full runs per optimizer: each gets "
                        "that many times --max-epochs epochs in all (stacey-compare --tune-budget)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="seeded runs per optimizer at its best config")
    parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                        help="comma-separated, as stacey-compare takes them (default: %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the tuning studies (default: %(default)s)")
    parser.add_argument("--sampler", default=None, help="sampler of every study (default: the tuner's)")
    parser.add_argument("--pruner", default=None, help="pruner of every study (default: the tuner's)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    add_workdir_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (2 trials, 1 epoch of 2 batches, 2 seeds)")
    arguments = parser.parse_args(argv)
    arguments.tasks = task_list(parser, arguments.tasks, TASKS)
    trials = arguments.trials if arguments.trials is not None else ("" if arguments.budgets else "12,24")
    arguments.trials = [int(value) for value in trials.split(",") if value.strip()]
    arguments.budgets = [int(value) for value in arguments.budgets.split(",") if value.strip()]
    arguments.optimizers = [name.strip() for name in arguments.optimizers.split(",") if name.strip()]
    if arguments.smoke:
        arguments.trials, arguments.budgets, arguments.seeds = ([2], [], 2) if not arguments.budgets else ([], [2], 2)
    return arguments


def measure(arguments: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    results = []
    for name in arguments.tasks:
        settings = TASKS[name]
        options, max_epochs, trainer_kwargs = run_settings(name, arguments.smoke)
        limits = [(f"{trials}", {"n_trials": trials}) for trials in arguments.trials]
        limits += [(f"runs{runs}", {"budget": runs * max_epochs}) for runs in arguments.budgets]
        for label, limit in limits:
            comparison = compare(
                settings["task"], arguments.optimizers, arguments.seeds, max_epochs=max_epochs,
                output_dir=workdir / f"{name}-{label}", trainer_kwargs=trainer_kwargs, task_options=options,
                progress=lambda line, name=name: print(f"[quality] {name}: {line}", flush=True),
                sampler=arguments.sampler, pruner=arguments.pruner, seed=arguments.seed, **limit,
            )  # fmt: skip
            results.append({"name": name, "task": settings["task"], "options": options, "max_epochs": max_epochs,
                            **limit, "comparison": comparison})  # fmt: skip
    return results


def _config_text(name: str, options: dict[str, Any]) -> str:
    stacey = ("p", "lr", "alpha", "tau", "tau_horizon", "betas", "weight_decay", "norm")
    keep = stacey if name == "stacey" else tuple(options)
    text = ", ".join(f"{key} {_short(options[key])}" for key in keep if options.get(key) is not None)
    for kind, overrides in options.get("kinds", {}).items() if name == "stacey" else ():
        text += "".join(f", {kind} {key} {_short(value)}" for key, value in overrides.items())
    return text


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(_short(item) for item in value)
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def render(arguments: argparse.Namespace, results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        comparison, monitor = result["comparison"], result["comparison"].monitor
        direction = resolve_task(result["task"]).direction
        maximize = direction == "maximize"
        better = "higher" if maximize else "lower"
        if "budget" in result:
            runs = result["budget"] // result["max_epochs"]
            budget = f"a tuning budget of {runs} full runs ({result['budget']} epochs) per optimizer"
        else:
            budget = f"{result['n_trials']} tuning trials per optimizer"
        lines += [
            f"## {result['name']}, {budget}: {monitor} ({better} is better)",
            "",
            f"Task options `{json.dumps(result['options'])}`, {result['max_epochs']} epochs per trial and per run, "
            f"{arguments.seeds} seeds.",
            "",
            f"| optimizer | final {monitor} (mean ± std) | tuned config | tuning trials (complete / pruned / failed) | "
            f"tuning epochs | winner's tuning mean |",
            "|---|---|---|---|---|---|",
        ]
        means = {}
        for name, tuned in comparison.tuned.items():
            finals = summarize([run.final_metric for run in comparison.runs if run.optimizer == name])
            # Ranked on the seeds that did not diverge; the row says how many did.
            means[name] = finals.mean if math.isfinite(finals.mean) else -math.inf * (1 if maximize else -1)
            lines.append(
                f"| {name} | {finals.text()} | {_config_text(name, tuned.options)} | "
                f"{tuned.complete} / {tuned.pruned} / {tuned.failed} | {tuned.epochs} | {tuned.best_value:.4f} |"
            )
        best = (max if maximize else min)(means, key=means.get)
        baselines = {name: value for name, value in means.items() if name != "stacey"}
        lines += ["", f"Best mean {monitor}: **{best}**."]
        if "stacey" in means and baselines:  # a run of some of the optimizers (--optimizers) has no gap to give
            rival = (max if maximize else min)(baselines, key=baselines.get)
            gap = (means["stacey"] - baselines[rival]) * (1 if maximize else -1)
            lines[-1] += (f" Stacey against the best baseline ({rival}): {gap:+.4f} "
                          f"({'better' if gap > 0 else 'worse' if gap < 0 else 'level'}).")  # fmt: skip
        lines.append("")
    lines += [
        "## How it was measured",
        "",
        "`stacey_lightning.compare.compare(..., n_trials=N)` (= `stacey-compare --tune-trials N`): every "
        "optimizer tuned by `stacey_lightning.tune` with the same trials, sampler, pruner and epochs per trial, "
        "each from its anchor points (Stacey: every geometry at its middle step first, Muon-, Lion- and SGD-like "
        "and the preset's centre, then the ladders' other rungs, `search.anchors`; baselines: their defaults on an "
        "lr ladder of 1/3, 1 and 3 times), Stacey on the task's preset, baselines on the `baselines` preset (lr "
        "and weight decay; SGD momentum 0.9). Then every optimizer retrained at its best "
        "config with seeds 0.. (same initial weights and batch order per seed). Stacey ran with foreach=True (no "
        "torch.compile; the same arithmetic). Tuning epochs: trained over all trials (pruned ones stop early). "
        "`--budgets K` gives every optimizer K times the epochs of one run (`--tune-budget`) instead of a trial "
        "count. Every study confirms its top candidates on other seeds within its budget (`study.confirm`); "
        "the winner's tuning mean is over those seeds.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    title = "Optimizer quality: Stacey against the optimizers a user would pick, tuned with equal budgets"
    return run_benchmark("quality.py", title, argv, parse_arguments, measure, render)


if __name__ == "__main__":
    main()
