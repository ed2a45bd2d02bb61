"""What does a short trial predict about a long one? The rank correlation, across a study's completed trials,
between each trial's validation metric after epoch e and its final one: the ground multi-fidelity tuning
(pruning at early rungs, Hyperband's brackets) stands on. Reads finished studies; trains nothing.

    python benchmarks/fidelity.py --storage sqlite:///runs/studies.db [--storage ...]
    python benchmarks/fidelity.py --smoke     # a made-up study: checks that the script works

Spearman's rho over the trials that completed (pruned ones have no final value; so the trials the pruner
kept, a selection that can only make early rungs look better than they are), by the fraction of the run
trained; confirmation runs are left out (they repeat a trial on another seed).
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

from _report import add_threads_argument, run_benchmark

RESULTS = Path(__file__).resolve().parent / "results" / "fidelity.md"
FRACTIONS = (0.1, 0.25, 0.5, 0.75)  # of max_epochs: where rho is read
MIN_TRIALS = 4  # fewer completed trials say nothing about a ranking


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", action="append", default=[], help="an Optuna storage URL (repeat for several)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    add_threads_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="one made-up study in a temporary SQLite file")
    arguments = parser.parse_args(argv)
    if not arguments.storage and not arguments.smoke:
        parser.error("--storage: give at least one storage URL (or --smoke)")
    return arguments


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for index in order[start : end + 1]:
            result[index] = (start + end) / 2 + 1
        start = end + 1
    return result


def spearman(first: list[float], second: list[float]) -> float:
    """Spearman's rho: Pearson's correlation of the ranks; nan where either side has one value only."""
    a, b = ranks(first), ranks(second)
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b))
    scale = math.sqrt(sum((x - mean_a) ** 2 for x in a) * sum((y - mean_b) ** 2 for y in b))
    return cov / scale if scale > 0 else math.nan


def study_rows(storage: str) -> list[dict[str, Any]]:
    """Per study in ``storage`` with enough completed trials: its name, trials, epochs and rho per fraction."""
    import optuna
    from optuna.trial import TrialState

    from stacey_lightning.study.confirm import is_confirmation

    rows = []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.intermediate_values and not is_confirmation(t)
        ]
        if len(done) < MIN_TRIALS:
            continue
        epochs = max(max(t.intermediate_values) for t in done) + 1  # steps are 0-based epochs
        rho = {}
        for fraction in FRACTIONS:
            step = max(0, math.ceil(fraction * epochs) - 1)
            pairs = [(t.intermediate_values[step], t.value) for t in done if step in t.intermediate_values]
            rho[fraction] = (spearman(*map(list, zip(*pairs))), step + 1) if len(pairs) >= MIN_TRIALS else None
        rows.append({"storage": storage, "study": name, "trials": len(done), "epochs": epochs, "rho": rho})
    return rows


def _made_up_study(path: Path) -> str:
    """A study whose early values rank the trials as the final ones do, but for noise."""
    import optuna

    storage = f"sqlite:///{path}"
    study = optuna.create_study(study_name="made-up", storage=storage, direction="minimize")
    for number in range(6):
        trial = study.ask()
        for epoch in range(4):
            trial.report(number + (3 - epoch) * (0.5 if number % 2 else 1.0), epoch)
        study.tell(trial, float(number))
    return storage


def measure(arguments: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storages = [_made_up_study(workdir / "made-up.db")] if arguments.smoke else arguments.storage
    return {"rows": [row for storage in storages for row in study_rows(storage)]}


def render(arguments: argparse.Namespace, measured: dict[str, Any]) -> str:
    header = " | ".join(f"after {fraction:.0%} of the run" for fraction in FRACTIONS)
    lines = [
        f"| storage | study | completed trials | epochs | {header} |",
        "|---|---|---|---|" + "---|" * len(FRACTIONS),
    ]
    for row in measured["rows"]:
        cells = [
            "-" if row["rho"][f] is None else f"{row['rho'][f][0]:+.2f} (epoch {row['rho'][f][1]})" for f in FRACTIONS
        ]
        lines.append(
            f"| {row['storage'].rsplit('/', 2)[-2]} | {row['study']} | {row['trials']} | {row['epochs']} | "
            + " | ".join(cells)
            + " |"
        )
    if not measured["rows"]:
        lines.append(f"| (no study with {MIN_TRIALS} completed trials) | | | |" + " |" * len(FRACTIONS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the analysis, print the report and write it to ``--output``; return the report."""
    title = "Fidelity: how well a trial's early epochs rank it against its final value"
    return run_benchmark("fidelity.py", title, argv, parse_arguments, measure, render)


if __name__ == "__main__":
    main()
