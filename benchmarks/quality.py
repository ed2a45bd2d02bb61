"""Final quality of Stacey tuned by the tool against AdamW, SGD with momentum and Lion, each tuned the same way.

For every task (``digits``, ``textlm``) and optimizer:

1. tuning: ``stacey_lightning.tune`` with the same trial budget, epochs per trial, sampler (multivariate
   TPE, same seed) and pruner (Hyperband through ``StaceyPruning``). Stacey searches the task's
   search-space preset (digits: ``default``, textlm: ``language``); a baseline searches its lr and
   weight decay (log-uniform ranges in ``BASELINE_SPACES``), its other options at their defaults
   (SGD: momentum 0.9), built through ``use_baseline`` inside the task, so it trains in the same
   loop, with the same pruning;
2. seeds: ``stacey_lightning.compare.compare`` trains every optimizer at its best config with
   ``--seeds`` seeds (same initial weights and batch order per seed across optimizers).

Reported: the final monitored metric (mean ± sample std over seeds), the tuning wall-clock time, the
wall-clock time of one seeded run (training, validation and set-up) and the time per step.

Stacey runs with foreach=True (no torch.compile: short runs pay no compile time). Baselines use a
constant learning rate; Stacey uses the schedule of its search-space preset, as compare does.

    python benchmarks/quality.py            # defaults, about 10-15 minutes on 2 CPU cores
    python benchmarks/quality.py --smoke    # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from _report import add_threads_argument, run_benchmark

from stacey_lightning import tune
from stacey_lightning.baselines import STACEY, use_baseline
from stacey_lightning.compare import compare
from stacey_lightning.tasks import resolve_task

RESULTS = Path(__file__).resolve().parent / "results" / "quality.md"
OPTIMIZERS = (STACEY, "adamw", "sgd", "lion")
# Baselines' search ranges (log-uniform): about three decades of lr around each optimizer's usual values.
BASELINE_SPACES = {
    "adamw": {"lr": (1e-4, 3e-2), "weight_decay": (1e-5, 1e-1)},
    "sgd": {"lr": (1e-3, 1.0), "weight_decay": (1e-6, 1e-2)},
    "lion": {"lr": (1e-5, 3e-3), "weight_decay": (1e-4, 1.0)},
}
# A baseline trial draws nothing from Stacey's space: every value fixed (its own optimizer replaces Stacey).
_NO_STACEY_SPACE = {"p": 4.0, "lr": 0.01, "alpha": 0.1, "tau": 0.01, "weight_decay": 0.0}
# Per task: make() options, trials and epochs. textlm is cut to fit a 2-core CPU in minutes: the "small"
# model on 60 KB of the corpus (about 15%), batches of 16 windows of 64 bytes.
TASKS = {
    "digits": {"options": {"foreach": True}, "trials": 20, "max_epochs": 10},
    "textlm": {
        "options": {"foreach": True, "size": "small", "batch_size": 16, "max_chars": 60_000},
        "trials": 10,
        "max_epochs": 5,
    },
}
SMOKE_OPTIONS = {"digits": {}, "textlm": {"width": 16, "depth": 1, "heads": 2, "context": 16, "max_chars": 2_000}}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits,textlm", help="comma-separated tasks (default: %(default)s)")
    parser.add_argument("--trials", type=int, help="tuning trials per optimizer (default: digits 20, textlm 10)")
    parser.add_argument(
        "--max-epochs", type=int, help="epochs per trial and per seeded run (default: digits 10, textlm 5)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="seeded runs per optimizer at its best config")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tuning runs and samplers")
    parser.add_argument("--textlm-max-chars", type=int, help="bytes of text for textlm (default 60000)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny budget (1 trial, 1 epoch of 2 batches, 2 seeds, tiny textlm) to check the script",
    )
    arguments = parser.parse_args(argv)
    arguments.tasks = [task.strip() for task in arguments.tasks.split(",") if task.strip()]
    unknown = sorted(set(arguments.tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)} (choose from {', '.join(TASKS)})")
    if arguments.smoke:
        arguments.trials, arguments.max_epochs, arguments.seeds = 1, 1, 2
    return arguments


def _baseline_task(make: Callable, name: str) -> Callable:
    """The task with its module switched to baseline ``name``, lr and weight decay drawn from the trial."""

    def make_with_baseline(trial=None, **options):
        module, datamodule = make(**options)
        use_baseline(
            module,
            name,
            {key: trial.suggest_float(key, low, high, log=True) for key, (low, high) in BASELINE_SPACES[name].items()},
        )
        return module, datamodule

    return make_with_baseline


def run_task(task: str, arguments: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    settings = TASKS[task]
    options = dict(settings["options"])
    if task == "textlm" and arguments.textlm_max_chars:
        options["max_chars"] = arguments.textlm_max_chars
    trainer_kwargs = {}
    if arguments.smoke:
        options.update(SMOKE_OPTIONS[task])
        trainer_kwargs = {"limit_train_batches": 2, "limit_val_batches": 1}
    trials = arguments.trials or settings["trials"]
    max_epochs = arguments.max_epochs or settings["max_epochs"]
    resolved = resolve_task(task)
    tuned: dict[str, dict[str, Any]] = {}
    for name in OPTIMIZERS:
        common = dict(
            n_trials=trials,
            max_epochs=max_epochs,
            seed=arguments.seed,
            task_options=options,
            trainer_kwargs=trainer_kwargs,
            study_name=f"{task}-{name}",
            output_dir=workdir / task / name,
            monitor=resolved.monitor,
            direction=resolved.direction,
        )
        started = time.monotonic()
        if name == STACEY:
            study = tune(task, **common)
        else:
            study = tune(_baseline_task(resolved.make, name), space=_NO_STACEY_SPACE, **common)
        best = study.best_trial
        tuned[name] = {
            "config": best.user_attrs["stacey_config"] if name == STACEY else dict(best.params),
            "seconds": time.monotonic() - started,
            "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "best_trial_value": best.value,
        }

    # compare reports after each run; the time between reports is that run's wall clock.
    marks = [time.monotonic()]

    def progress(line: str) -> None:
        marks.append(time.monotonic())
        print(f"[quality] {task}: {line}", flush=True)

    comparison = compare(
        task,
        OPTIMIZERS,
        seeds=arguments.seeds,
        max_epochs=max_epochs,
        config=tuned[STACEY]["config"],
        monitor=resolved.monitor,
        output_dir=workdir / task / "compare",
        trainer_kwargs=trainer_kwargs,
        optimizer_options={name: tuned[name]["config"] for name in OPTIMIZERS if name != STACEY},
        task_options=options,
        progress=progress,
    )
    for run, start, end in zip(comparison.runs, marks, marks[1:]):
        tuned[run.optimizer].setdefault("finals", []).append(run.final_metric)
        tuned[run.optimizer].setdefault("run_seconds", []).append(end - start)
        tuned[run.optimizer].setdefault("step_seconds", []).append(run.seconds_per_step)
    return {
        "task": task,
        "monitor": resolved.monitor,
        "direction": resolved.direction,
        "options": options,
        "trials": trials,
        "max_epochs": max_epochs,
        "results": tuned,
    }


def _config_text(name: str, config: dict[str, Any]) -> str:
    if name != STACEY:
        return ", ".join(f"{key} {value:.3g}" for key, value in config.items())
    p = config["p"]
    text = (
        f"p {p if isinstance(p, str) else f'{float(p):.3g}'}, lr {config['lr']:.3g}, alpha {config['alpha']:.3g}, "
        f"tau {config['tau']:.3g}, wd {config['weight_decay']:.3g}"
    )
    text += f", schedule {config.get('schedule', {}).get('name', 'constant')}"
    for kind, overrides in config.get("kinds", {}).items():
        if "p" in overrides:
            value = overrides["p"]
            text += f", {kind} p {value if isinstance(value, str) else f'{float(value):.3g}'}"
    return text


def render_task(task_result: dict[str, Any], seeds: int) -> str:
    monitor, results = task_result["monitor"], task_result["results"]
    better = "higher" if task_result["direction"] == "maximize" else "lower"
    lines = [
        f"## {task_result['task']}: {monitor} ({better} is better)",
        "",
        f"Task options: `{json.dumps(task_result['options'])}`; {task_result['trials']} tuning trials per "
        f"optimizer, {task_result['max_epochs']} epochs per trial and per run, {seeds} seeds.",
        "",
        f"| optimizer | tuned config | final {monitor} (mean ± std, {seeds} seeds) | best tuning trial | "
        "tuning trials (complete / pruned) | tuning time (s) | time per seeded run (s) | time per step (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        finals = result["finals"]
        std = f" ± {statistics.stdev(finals):.4f}" if len(finals) > 1 else ""
        lines.append(
            f"| {name} | {_config_text(name, result['config'])} | {statistics.fmean(finals):.4f}{std} | "
            f"{result['best_trial_value']:.4f} | {result['complete']} / {result['pruned']} | {result['seconds']:.0f} | "
            f"{statistics.fmean(result['run_seconds']):.1f} | "
            f"{statistics.fmean(result['step_seconds']) * 1e3:.3g} |"
        )
    pick = max if task_result["direction"] == "maximize" else min
    winner = pick(results, key=lambda name: statistics.fmean(results[name]["finals"]))
    lines += ["", f"Best mean {monitor}: **{winner}**."]
    return "\n".join(lines)


def _measure(arguments: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    return [run_task(task, arguments, workdir) for task in arguments.tasks]


def render(arguments: argparse.Namespace, task_results: list[dict[str, Any]]) -> str:
    lines = [render_task(result, arguments.seeds) + "\n" for result in task_results]
    lines += [
        "## How it was measured",
        "",
        "Every optimizer was tuned by `stacey_lightning.tune` with the same number of trials, epochs per "
        "trial, TPE sampler seed and Hyperband pruner; baselines searched lr and weight decay (log-uniform: "
        + "; ".join(
            f"{name} lr {space['lr'][0]:g}..{space['lr'][1]:g}, weight decay "
            f"{space['weight_decay'][0]:g}..{space['weight_decay'][1]:g}"
            for name, space in BASELINE_SPACES.items()
        )
        + "; SGD momentum 0.9), Stacey its task's preset (digits `default`, textlm `language`). Then "
        "`stacey_lightning.compare.compare` trained each at its best config with the seeds 0.. "
        f"{arguments.seeds - 1}: per seed, every optimizer starts from the same weights and batch order.",
        "Stacey ran with foreach=True (no torch.compile; same arithmetic). Baselines use a constant "
        "learning rate; Stacey uses the schedule of its tuned config (in the table).",
        "Best tuning trial: the study's best value (seed 0, the run the config was picked on). "
        "Tuning time: wall clock of the whole study. Time per seeded run: wall clock of one run (set-up, "
        "training, validation). Time per step: median training step (forward, backward, optimizer step). "
        "The machine was shared with other jobs, so times are indicative only.",
        "textlm is reduced to fit this budget on CPU (its task options above: part of the corpus, few "
        "epochs): its bits per character are far from what a longer run reaches.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    return run_benchmark(
        "quality.py",
        "Optimizer quality: tuned Stacey against tuned AdamW, SGD and Lion",
        argv,
        parse_arguments,
        _measure,
        render,
    )


if __name__ == "__main__":
    main()
