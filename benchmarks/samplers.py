"""Which sampler and pruner a Stacey study should use by default, measured.

For each task, budget (trials per study) and configuration, one default study (the task's preset,
its anchor points, ``stacey_lightning.tune``) per study seed; reported: the best value the study found
(mean over study seeds), the epochs it trained (pruned trials stop early), and its wall-clock time.

Configurations: every sampler with the default pruner, and every pruner with the default sampler:

- samplers: ``tpe`` (multivariate, startup a quarter of the budget), ``gp`` (Optuna's GPSampler),
  ``cmaes``, ``random``;
- pruners: ``hyperband``, ``median`` (after a quarter of the budget and one epoch), ``none``.

    python benchmarks/samplers.py                   # digits at 12, 24, 48 trials; textlm at 12, 24
    python benchmarks/samplers.py --smoke           # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from _report import add_threads_argument, add_workdir_argument, run_benchmark, task_list
from optuna.trial import TrialState

from stacey_lightning import tune
from stacey_lightning.attributes import DEFAULT_PRUNER, DEFAULT_SAMPLER
from stacey_lightning.tasks import resolve_task

RESULTS = Path(__file__).resolve().parent / "results" / "samplers.md"
SAMPLERS = ("tpe", "gp", "cmaes", "random")
PRUNERS = ("hyperband", "median", "none")
# Per task: make() options, epochs per trial, budgets, study seeds. textlm is cut to fit a 2-core CPU:
# the small model on 60 KB of the corpus (as benchmarks/quality.py), batches of 16 windows of 64 bytes.
TASKS = {
    "digits": {"options": {"foreach": True}, "max_epochs": 10, "budgets": (12, 24, 48), "seeds": 3},
    "textlm": {
        "options": {"foreach": True, "batch_size": 16, "max_chars": 60_000},
        "max_epochs": 5,
        "budgets": (12, 24),
        "seeds": 1,
    },
}
SMOKE_OPTIONS = {"digits": {}, "textlm": {"width": 16, "depth": 1, "heads": 2, "context": 16, "max_chars": 2_000}}


def configurations() -> list[tuple[str, str]]:
    """(sampler, pruner): each sampler with the default pruner, then each other pruner with the default sampler."""
    chosen = [(sampler, DEFAULT_PRUNER) for sampler in SAMPLERS]
    return chosen + [(DEFAULT_SAMPLER, pruner) for pruner in PRUNERS if pruner != DEFAULT_PRUNER]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="digits,textlm", help="comma-separated tasks (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    add_workdir_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="2 trials of 1 epoch of 2 batches, one budget and seed")
    arguments = parser.parse_args(argv)
    arguments.tasks = task_list(parser, arguments.tasks, TASKS)
    return arguments


def _study(task: str, sampler: str, pruner: str, budget: int, seed: int, arguments, workdir: Path) -> dict:
    settings = TASKS[task]
    options, max_epochs, trainer_kwargs = dict(settings["options"]), settings["max_epochs"], {}
    if arguments.smoke:
        options.update(SMOKE_OPTIONS[task])
        max_epochs, trainer_kwargs = 1, {"limit_train_batches": 2, "limit_val_batches": 1}
    name = f"{task}-{sampler}-{pruner}-{budget}-{seed}"
    started = time.monotonic()
    study = tune(
        task,
        n_trials=budget,
        max_epochs=max_epochs,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        task_options=options,
        trainer_kwargs=trainer_kwargs,
        study_name=name,
        output_dir=workdir / name,
    )
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    return {"best": study.best_value, "epochs": sum(len(t.intermediate_values) for t in study.trials),
            "seconds": time.monotonic() - started, "complete": len(complete),
            "best_anchor": study.best_trial.user_attrs.get("anchor", "")}  # fmt: skip


def measure(arguments: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for task in arguments.tasks:
        settings = TASKS[task]
        budgets = [2] if arguments.smoke else settings["budgets"]
        seeds = 1 if arguments.smoke else settings["seeds"]
        # Interleaved: every configuration's study of a seed and budget before the next seed, so that load
        # on the machine falls on all of them alike.
        for seed in range(seeds):
            for budget in budgets:
                for sampler, pruner in configurations():
                    row = _study(task, sampler, pruner, budget, seed, arguments, workdir)
                    results.setdefault(task, {}).setdefault((sampler, pruner, budget), []).append(row)
                    print(f"[samplers] {task} {sampler}+{pruner} {budget} trials seed {seed}: best {row['best']:.4f}, "
                          f"{row['epochs']} epochs, {row['seconds']:.0f} s", flush=True)  # fmt: skip
    return results


def render(arguments: argparse.Namespace, results: dict[str, Any]) -> str:
    lines = []
    for task, rows in results.items():
        monitor, direction = resolve_task(task).monitor, resolve_task(task).direction
        budgets = sorted({budget for _, _, budget in rows})
        better = "higher" if direction == "maximize" else "lower"
        seeds = len(next(iter(rows.values())))
        lines += [f"## {task}: best {monitor} found ({better} is better), mean over {seeds} study seed(s)", "",
                  "| sampler | pruner | " + " | ".join(f"{b} trials: best / epochs / s" for b in budgets) + " |",
                  "|---|---|" + "---|" * len(budgets)]  # fmt: skip
        for sampler, pruner in configurations():
            cells = []
            for budget in budgets:
                runs = rows[(sampler, pruner, budget)]
                cells.append(f"{statistics.fmean(r['best'] for r in runs):.4f} / "
                             f"{statistics.fmean(r['epochs'] for r in runs):.0f} / "
                             f"{statistics.fmean(r['seconds'] for r in runs):.0f}")  # fmt: skip
            lines.append(f"| {sampler} | {pruner} | " + " | ".join(cells) + " |")
        anchors = sorted({r["best_anchor"] for runs in rows.values() for r in runs if r["best_anchor"]})
        lines += ["", f"Studies whose best trial was an anchor point: "
                  f"{sum(bool(r['best_anchor']) for runs in rows.values() for r in runs)} of "
                  f"{sum(len(runs) for runs in rows.values())} ({', '.join(anchors) or 'none'}).", ""]  # fmt: skip
    lines += [
        "Every study: the task's preset and anchor points, `stacey_lightning.tune`, Stacey with foreach=True "
        "(no compile time), training seed = study seed. Epochs: trained over all the study's trials (a pruned "
        "trial counts the epochs it ran). The machine is shared: times are indicative.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    return run_benchmark("samplers.py", "Samplers and pruners for Stacey studies", argv, parse_arguments, measure,
                         render)  # fmt: skip


if __name__ == "__main__":
    main()
