"""The appendix of ``benchmarks/results/geometry.md``: every run of ``geometry.csv`` as Markdown tables,
one per experiment.

    python -m benchmarks.geometry.tables [--csv PATH] > appendix.md
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .runner import CSV

__all__ = ["markdown", "main"]

_STACEY_KEYS = ("p", "lr", "alpha", "tau", "weight_decay", "betas")


def _number(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else f"{value}"


def short_config(config: str, optimizer: str) -> str:
    """A run's config (JSON) in a table cell: Stacey's main keys first, then what differs from the defaults."""
    values = json.loads(config)
    if optimizer != "stacey":
        return ", ".join(
            f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}" for key, value in values.items()
        )
    keys = _STACEY_KEYS + (("eps",) if values.get("eps", 1e-8) != 1e-8 else ())
    cells = [f"{key} {_number(values[key])}" for key in keys if key in values]
    if values.get("kinds"):
        cells.append("kinds " + json.dumps(values["kinds"]).replace('"', ""))
    if "schedule" in values:
        cells.append("schedule " + values["schedule"]["name"])
    if values.get("tau_follows_lr"):
        cells.append("tau_follows_lr")
    return ", ".join(cells)


def markdown(rows: Iterable[Mapping[str, str]]) -> str:
    """One table per experiment, in the order the experiments first appear in ``rows``."""
    by_experiment: dict[str, list[Mapping[str, str]]] = {}
    for row in rows:
        by_experiment.setdefault(row["exp"], []).append(row)
    lines = []
    for experiment, runs in by_experiment.items():
        lines += [
            f"\n### {experiment}\n",
            "| run | optimizer | seed | config | metric | value | steps | s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['name']} | {r['optimizer']} | {r['seed']} | {short_config(r['config'], r['optimizer'])} | "
            f"{r['metric']} | {float(r['value']):.4f} | {r['steps']} | {r['seconds']} |"
            for r in runs
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.geometry.tables", description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=CSV, help=f"the runs (default {CSV})")
    arguments = parser.parse_args(argv)
    with arguments.csv.open(newline="") as file:
        print(markdown(csv.DictReader(file)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
