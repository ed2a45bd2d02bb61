"""Draw the README's architecture figure: the package's layers, and the path of one tuning trial through them.

    python examples/make_architecture_figure.py [--output docs/figures/architecture.png]

Matplotlib only: no network, no training, a second or two. Left, the layers, lowest first; each imports
only the ones below it. Right, what happens between ``stacey-tune`` and one optimizer step, each step
coloured as the layer that holds it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, never a window
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "architecture.png"

# (layer, modules, what it holds, colour), lowest first.
LAYERS = [
    (
        "optim/",
        "optimizer.py, _functional.py, _fused.py",
        "Stacey: validation, state, dispatch; the plain, foreach and compiled updates",
        "#dbe9f6",
    ),
    (
        "lightning/",
        "config.py, choice.py, param_groups.py, schedule.py, mixin.py, monitor.py",
        "StaceyConfig, OptimizerChoice, groups by kind, StaceyMixin, StaceyMonitor",
        "#dcefdc",
    ),
    (
        "tasks/  ·  run.py  ·  baselines.py",
        "digits, textlm, cifar10  ·  build, make_trainer, fit  ·  AdamW, SGD, Lion",
        "the built-in tasks, one training run of a task, the optimizers compared with",
        "#fdf0d5",
    ),
    (
        "search/  ·  study/  ·  execution/  ·  tuner/",
        "space, anchors  ·  spec, admission, confirm  ·  storage, supervisor  ·  workers, trial",
        "what a trial samples, a study's rules, running across hosts, a trial's glue",
        "#f6dede",
    ),
    (
        "compare/  ·  finder/  ·  report.py",
        "tuned.py, runs.py, outputs.py  ·  procedure.py, result.py  ·  report.py",
        "stacey-compare (equal budgets, seeds, tables), stacey-find, stacey-report",
        "#e9e0f3",
    ),
    (
        "cli/",
        "stacey-tune, stacey-compare, stacey-report, stacey-find",
        "every command's parser; heavy imports only after parsing",
        "#e6e6e6",
    ),
]

# (step, where it lives, index of its layer in LAYERS).
TRIAL_PATH = [
    ("stacey-tune --task digits ...", "cli/commands.py: parse the arguments", 5),
    ("StudySpec", "study/spec.py: every setting checked once", 3),
    ("admission", "study/admission.py: may a trial start?", 3),
    ("run_trial", "tuner/trial.py: sample a config from the space", 3),
    ("run.build, use_optimizer, fit", "run.py: seed, build the task, set_optimizer_choice", 2),
    ("configure_optimizers", "lightning/mixin.py: groups by kind, schedule, Stacey", 1),
    ("Stacey.step", "optim/optimizer.py: one compiled pass over x, g, z, m", 0),
]


def _box(ax, x, y, width, height, colour, **kwargs) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            width,
            height,
            boxstyle="round,pad=0.02,rounding_size=0.12",
            facecolor=colour,
            edgecolor="#555555",
            linewidth=1.0,
            **kwargs,
        )
    )


def _arrow(ax, start, end, **kwargs) -> None:
    style = dict(arrowstyle="-|>", mutation_scale=14, color="#444444", linewidth=1.2)
    ax.add_patch(FancyArrowPatch(start, end, **{**style, **kwargs}))


def draw(output: Path) -> None:
    figure, ax = plt.subplots(figsize=(15, 8.4))
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 8.4)
    ax.axis("off")

    # Left: the layers, lowest at the bottom.
    ax.text(0.3, 8.0, "Layers: each imports only the ones below it", fontsize=14, weight="bold")
    left, width, height, gap, bottom = 0.3, 7.2, 1.02, 0.2, 0.35
    for index, (name, modules, holds, colour) in enumerate(LAYERS):
        y = bottom + index * (height + gap)
        _box(ax, left, y, width, height, colour)
        ax.text(left + 0.15, y + height - 0.22, name, fontsize=12.5, weight="bold", family="monospace", va="center")
        ax.text(left + 0.15, y + height / 2 - 0.02, modules, fontsize=9, color="#333333", va="center", style="italic")
        ax.text(left + 0.15, y + 0.2, holds, fontsize=9.5, va="center")
        if index:
            _arrow(ax, (left + width - 0.5, y - 0.02), (left + width - 0.5, y - gap + 0.02))

    # Right: one trial, top to bottom, each step in its layer's colour.
    ax.text(8.1, 8.0, "One tuning trial, from the command to the optimizer step", fontsize=14, weight="bold")
    x, step_width, step_height, top = 8.1, 6.6, 0.78, 7.0
    pitch = (top - bottom) / (len(TRIAL_PATH) - 1)
    for index, (step, where, layer) in enumerate(TRIAL_PATH):
        y = top - index * pitch
        _box(ax, x, y, step_width, step_height, LAYERS[layer][3])
        ax.text(x + 0.15, y + step_height - 0.24, step, fontsize=11.5, weight="bold", family="monospace", va="center")
        ax.text(x + 0.15, y + 0.22, where, fontsize=9.5, va="center")
        if index:
            _arrow(ax, (x + 0.9, y + pitch - 0.02), (x + 0.9, y + step_height + 0.02))
    ax.text(
        x + step_width - 0.1,
        bottom - 0.22,
        "then the trial's value goes back to the storage; tuner/outputs.py writes best.yaml and the table",
        fontsize=9,
        ha="right",
        color="#444444",
    )

    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=FIGURE, help="PNG to write (default: %(default)s)")
    arguments = parser.parse_args()
    draw(arguments.output)
    print(f"wrote {arguments.output}")


if __name__ == "__main__":
    main()
