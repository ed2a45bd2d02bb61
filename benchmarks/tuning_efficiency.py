"""How much training the default pruned study needs, against a full grid, to find a config as good.

On the ``digits`` task:

1. a full grid over p x lr x tau (alpha fixed at 0.1, weight decay 0, the other Stacey settings at
   their defaults), every point trained for the full budget of ``--max-epochs`` epochs;
2. the default study of ``stacey_lightning.tune`` (multivariate TPE, Hyperband pruner, the task's
   ``default`` search space) with the same number of epochs per trial, once per sampler seed
   (``--seeds``); a pruned trial counts the epochs it ran (its number of reported validation values);
3. per study, the fraction of the grid's training epochs it spent, counting its trials in order, up
   to and including the first completed trial whose final val_acc is within ``--tolerance`` (0.5
   percentage points) of the grid's best; and the median over the studies. Target: at most 30%.

Both use ``tune`` itself (the grid as enqueued trials without pruning), so both train the same way,
always with the task's seed 0. Stacey runs with foreach=True (no torch.compile), which keeps short
runs free of compile time and does not change the arithmetic.

    python benchmarks/tuning_efficiency.py                 # defaults, about 10-15 minutes on 2 CPU cores
    python benchmarks/tuning_efficiency.py --smoke         # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from pathlib import Path

import optuna
from _report import add_threads_argument, run_benchmark

from stacey_lightning import tune
from stacey_lightning.search.samplers import make_sampler

RESULTS = Path(__file__).resolve().parent / "results" / "tuning_efficiency.md"
MONITOR = "val_acc"
TARGET = 0.30  # the target: at most 30% of the grid's training epochs
# The grid's space: p through r = 1/(p-1) as the tuner samples it; the grid values lie inside these ranges.
GRID_SPACE = {
    "p": {"distribution": "p_exponent", "low": 2.0, "high": math.inf},
    "lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1.0},
    "tau": {"distribution": "log_uniform", "low": 1e-4, "high": 1.0},
    "alpha": 0.1,
    "weight_decay": 0.0,
}


def _floats(text: str) -> list[float]:
    return [float(value) for value in text.split(",") if value.strip()]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--p", type=_floats, default=[2, 3, 4, 8, math.inf], help="grid values of p (inf allowed)")
    parser.add_argument("--lr", type=_floats, default=[0.003, 0.01, 0.03], help="grid values of lr")
    parser.add_argument("--tau", type=_floats, default=[0.01, 0.1], help="grid values of tau")
    parser.add_argument("--trials", type=int, default=20, help="trials of the pruned study (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=15, help="epochs per grid point and per unpruned trial")
    parser.add_argument(
        "--seeds", type=int, default=10, help="studies, one per sampler seed 0.. (default: %(default)s)"
    )
    parser.add_argument("--tolerance", type=float, default=0.005, help="accuracy tolerance (0.005 = 0.5 pp)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny budget (2 grid points, 2 trials, 1 epoch of 5 batches) to check the script",
    )
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.p, arguments.lr, arguments.tau = [2.0, math.inf], [0.03], [0.01]
        arguments.trials, arguments.max_epochs, arguments.seeds = 2, 1, 1
    return arguments


def _epochs(trial: optuna.trial.FrozenTrial) -> int:
    """Epochs a trial trained: the tuner reports the monitor once per epoch's validation."""
    return len(trial.intermediate_values)


def _p_text(p: float) -> str:
    return "inf" if p == math.inf else f"{p:.3g}"


def _walk(study: optuna.Study, threshold: float) -> dict:
    """The study's trials in order with the running epoch total, and where it first reached ``threshold``."""
    rows, spent, reached = [], 0, None
    for trial in sorted(study.trials, key=lambda t: t.number):
        spent += _epochs(trial)
        final = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
        rows.append((trial, spent, final))
        if reached is None and final is not None and final >= threshold:
            reached = (trial, spent)
    return {"study": study, "rows": rows, "epochs": spent, "reached": reached}


def run(arguments: argparse.Namespace, workdir: Path) -> dict:
    trainer_kwargs = {"limit_train_batches": 5, "limit_val_batches": 2} if arguments.smoke else {}
    # Training always uses seed 0 (weights, batch order); each study gets its own default sampler, seeded.
    common = dict(
        max_epochs=arguments.max_epochs, task_options={"foreach": True}, trainer_kwargs=trainer_kwargs, seed=0
    )
    # The grid's points are enqueued: tune trains enqueued parameters before it samples any. (Optuna's
    # GridSampler stops the study through Study.stop, which only works inside Study.optimize.)
    (workdir / "grid").mkdir(parents=True)
    storage = f"sqlite:///{workdir / 'grid' / 'optuna.db'}"
    grid = optuna.create_study(storage=storage, study_name="grid", direction="maximize")
    for p, lr, tau in itertools.product(arguments.p, arguments.lr, arguments.tau):
        grid.enqueue_trial({"r": 0.0 if p == math.inf else 1.0 / (p - 1.0), "lr": lr, "tau": tau})
    started = time.monotonic()
    grid_study = tune(
        "digits",
        space=GRID_SPACE,
        n_trials=len(grid.trials),
        storage=storage,
        study_name="grid",
        output_dir=workdir / "grid",
        pruner=optuna.pruners.NopPruner(),
        **common,
    )
    grid_seconds = time.monotonic() - started
    grid_trials = [t for t in grid_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    grid_best = max(grid_trials, key=lambda t: t.value)
    threshold = grid_best.value - arguments.tolerance
    studies = []
    for seed in range(arguments.seeds):
        started = time.monotonic()
        study = tune(
            "digits",
            n_trials=arguments.trials,
            study_name=f"study-{seed}",
            sampler=make_sampler(None, seed, arguments.trials),
            output_dir=workdir / f"study-{seed}",
            **common,
        )
        studies.append({**_walk(study, threshold), "seed": seed, "seconds": time.monotonic() - started})
    return dict(
        grid=grid_study,
        grid_trials=grid_trials,
        grid_epochs=sum(_epochs(t) for t in grid_study.trials),
        grid_best=grid_best,
        threshold=threshold,
        grid_seconds=grid_seconds,
        studies=studies,
    )


def _config(trial: optuna.trial.FrozenTrial) -> dict:
    return trial.user_attrs["stacey_config"]


def _fraction_text(spent: int, grid_epochs: int) -> str:
    fraction = spent / grid_epochs
    return f"{fraction:.1%} ({'meets' if fraction <= TARGET else 'misses'} the {TARGET:.0%} target)"


def render(arguments: argparse.Namespace, result: dict) -> str:
    """The Markdown body: the grid, one row per study seed, the grid's best per p, and seed 0's trials."""
    best, studies, grid_epochs = result["grid_best"], result["studies"], result["grid_epochs"]
    config = _config(best)
    lines = [
        f"Grid: {len(arguments.p)} p x {len(arguments.lr)} lr x {len(arguments.tau)} tau = "
        f"{len(result['grid'].trials)} points (p {', '.join(_p_text(p) for p in arguments.p)}; lr "
        f"{', '.join(f'{lr:g}' for lr in arguments.lr)}; tau {', '.join(f'{tau:g}' for tau in arguments.tau)}; "
        f"alpha 0.1, weight decay 0), {arguments.max_epochs} epochs each: {grid_epochs} training epochs in "
        f"{result['grid_seconds']:.0f} s. Best {MONITOR} {best.value:.4f} (p {_p_text(float(config['p']))}, "
        f"lr {config['lr']:.3g}, tau {config['tau']:.3g}); target: {MONITOR} >= {result['threshold']:.4f} "
        f"(within {arguments.tolerance * 100:.2g} pp).",
        "",
        f"Default study (TPE + Hyperband, `default` space), {arguments.trials} trials, one study per sampler seed:",
        "",
        f"| sampler seed | trials (complete / pruned) | training epochs | time (s) | best {MONITOR} | "
        "epochs to target | fraction of grid epochs |",
        "|---|---|---|---|---|---|---|",
    ]
    fractions = []
    for entry in studies:
        study, reached = entry["study"], entry["reached"]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        best_value = f"{max(t.value for t in complete):.4f}" if complete else "none"
        if reached is None:
            to_target, fraction = "not reached", f"not reached ({entry['epochs'] / grid_epochs:.1%} spent)"
        else:
            fractions.append(reached[1] / grid_epochs)
            to_target = f"{reached[1]} (trial #{reached[0].number})"
            fraction = _fraction_text(reached[1], grid_epochs)
        lines.append(
            f"| {entry['seed']} | {len(study.trials)} ({len(complete)} / {pruned}) | {entry['epochs']} | "
            f"{entry['seconds']:.0f} | {best_value} | {to_target} | {fraction} |"
        )
    missed = len(studies) - len(fractions)
    summary = (
        f"median over the seeds that reached it: **{statistics.median(fractions):.1%}**"
        if fractions
        else "**no study reached the target**"
    )
    points, hits = len(result["grid_trials"]), sum(t.value >= result["threshold"] for t in result["grid_trials"])
    # The first hit in a random order of n points of which h hit lies at position (n + 1) / (h + 1) on average.
    random_order = (points + 1) / (hits + 1) / points
    lines += [
        "",
        f"Fraction of the grid's training epochs needed: {summary}; {len(fractions)} of {len(studies)} "
        f"studies reached the target{f', {missed} did not within {arguments.trials} trials' if missed else ''}.",
        "",
        f"For scale: {hits} of {points} grid points reach the target themselves, so the grid trained in a "
        f"random order would reach it after {random_order:.1%} of its epochs on average. Where that is "
        "small too, the task is flat at this tolerance and the fraction says little about the pruner.",
        "",
        f"Grid, best {MONITOR} for each p (over lr and tau):",
        "",
        f"| p | best {MONITOR} | lr | tau |",
        "|---|---|---|---|",
    ]
    by_p: dict[float, optuna.trial.FrozenTrial] = {}
    for trial in result["grid_trials"]:
        p = float(_config(trial)["p"])
        # The grid's p as given (the sampled r gives it back with rounding, e.g. 4.000000000000001).
        key = p if p == math.inf else min(arguments.p, key=lambda value: abs(value - p))
        if key not in by_p or trial.value > by_p[key].value:
            by_p[key] = trial
    for p in sorted(by_p):
        trial = by_p[p]
        lines.append(f"| {_p_text(p)} | {trial.value:.4f} | {_config(trial)['lr']:.3g} | {_config(trial)['tau']:.3g} |")
    lines += [
        "",
        f"Study with sampler seed {studies[0]['seed']}, trials in order (epochs: trained; cumulative: running total):",
        "",
        f"| trial | state | p | lr | alpha | tau | epochs | cumulative | {MONITOR} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for trial, spent, final in studies[0]["rows"]:
        trial_config = trial.user_attrs.get("stacey_config", {})
        last = list(trial.intermediate_values.values())[-1] if trial.intermediate_values else float("nan")
        value = f"{final:.4f}" if final is not None else f"({last:.4f} when stopped)"
        lines.append(
            f"| {trial.number} | {trial.state.name} | {_p_text(float(trial_config.get('p', 'nan')))} | "
            f"{trial_config.get('lr', float('nan')):.3g} | {trial_config.get('alpha', float('nan')):.3g} | "
            f"{trial_config.get('tau', float('nan')):.3g} | {_epochs(trial)} | {spent} | {value} |"
        )
    lines += [
        "",
        "Stacey ran with foreach=True (the digits task option): no torch.compile, so short runs pay no "
        "compile time; the arithmetic is the same. Every run trains with seed 0 (weights and batch order), "
        "so the grid and the studies differ only in their configs; the studies differ only in the "
        "sampler's seed. The studies search the `default` space (p, lr, alpha, tau, betas, weight decay), "
        "wider than the grid. The first 10 trials of a TPE study are its random start-up trials. digits "
        "validates on 359 images: 0.5 pp is about 2 images, so single runs are noisy at this tolerance.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    return run_benchmark(
        "tuning_efficiency.py",
        "Tuning efficiency: default pruned study against a full grid (digits)",
        argv,
        parse_arguments,
        run,
        render,
    )


if __name__ == "__main__":
    main()
