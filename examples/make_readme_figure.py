"""Make the README's comparison figure with stacey-compare: Stacey, AdamW, SGD and Lion on digits.

    python examples/make_readme_figure.py [--config stacey_runs/best.yaml] [--epochs 8] [--seeds 3]

Writes docs/figures/compare_digits.png (the figure stacey-compare draws, copied as it is) and prints
the table. Without --config, Stacey uses the digits task's own settings (lr 0.03, p 4); the
baselines use their defaults (stacey_lightning.baselines). CPU, a few minutes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from stacey_lightning.compare import compare

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "compare_digits.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="Stacey config YAML, for example the tuner's best.yaml")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per optimizer (default: %(default)s)")
    parser.add_argument(
        "--output", default="stacey-compare-digits", help="stacey-compare's output directory (default: %(default)s)"
    )
    arguments = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    result = compare(
        "digits",
        ("stacey", "adamw", "sgd", "lion"),
        seeds=arguments.seeds,
        max_epochs=arguments.epochs,
        config=arguments.config,
        output_dir=arguments.output,
        progress=print,
    )
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.figure, FIGURE)
    print(Path(result.markdown).read_text())
    print(f"figure: {FIGURE}")


if __name__ == "__main__":
    main()
