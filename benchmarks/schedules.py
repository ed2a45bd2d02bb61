"""Schedules with Stacey's tau: constant lr against warmup + cosine, with tau constant (the paper) and with
tau following lr (``tau_follows_lr``), on textlm; AdamW and Lion with the same schedules for scale.

Configurations (5-epoch textlm of benchmarks/quality.py, seed 0 unless ``--seeds``):

- "old tuned": the configuration the previous default study found (p 2.23, lr 0.47, alpha 2.53,
  tau 0.095; benchmarks/results/quality.md of 2026-11-28): tau * T = 25, an SGD-like regime;
- "p 4, tau 1/T": the region that wins on textlm (benchmarks/results/geometry.md);
- AdamW (lr 3e-3) and Lion (lr 3e-3), weight decay 0.01.

Schedules: constant; warmup_cosine (5% warmup, to 0) with tau constant; the same with tau following lr.
Writes the table and a figure of val_bpc per epoch (before/after: tau constant against tau following).

    python benchmarks/schedules.py            # ~5 minutes on one core
    python benchmarks/schedules.py --smoke    # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from _report import add_threads_argument, run_benchmark

from stacey_lightning import run
from stacey_lightning.tasks.textlm import make_textlm

RESULTS = Path(__file__).resolve().parent / "results" / "schedules.md"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "schedules_textlm.png"
OPTIONS = {"size": "small", "batch_size": 16, "max_chars": 60_000, "foreach": True}
WARMUP_COSINE = {"name": "warmup_cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.0}
CONFIGS = {
    "old tuned": {"p": 2.23, "lr": 0.47, "alpha": 2.53, "tau": 0.0954, "weight_decay": 0.00831},
    "p 4, tau 1/T": {"p": 4.0, "lr": 0.08, "alpha": 0.0, "tau_horizon": 1.0, "weight_decay": 3e-5 / 0.08},
}
BASELINES = {"adamw": {"lr": 3e-3, "weight_decay": 0.01}, "lion": {"lr": 3e-3, "weight_decay": 0.01}}
SCHEDULES = ("constant", "warmup_cosine, tau constant", "warmup_cosine, tau follows lr")


class EpochCurve(pl.Callback):
    """val_bpc after every validation."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # After the module's on_validation_epoch_end, which logs val_bpc.
        if not trainer.sanity_checking:
            self.values.append(float(trainer.callback_metrics["val_bpc"]))


def _run(optimizer: str, options: dict[str, Any], schedule: str, seed: int, arguments) -> list[float]:
    task_options = dict(OPTIONS)
    max_epochs, limits = 5, {}
    if arguments.smoke:
        task_options.update(width=16, depth=1, heads=2, context=16, max_chars=2_000)
        max_epochs, limits = 1, {"limit_train_batches": 3, "limit_val_batches": 1}
    module, datamodule = run.build(make_textlm, seed=seed, options=task_options)
    if optimizer == "stacey":
        config = {**options, "betas": [0.9, 0.99], "schedule": {"name": "constant"}}
        if schedule != "constant":
            config.update(schedule=WARMUP_COSINE, tau_follows_lr=schedule.endswith("follows lr"))
        run.use_optimizer(module, run.optimizer_choice("stacey", config))
    else:
        run.use_optimizer(module, run.optimizer_choice(optimizer, options))
        if schedule != "constant":
            _add_warmup_cosine(module)
    curve = EpochCurve()
    trainer = run.make_trainer(max_epochs=max_epochs, logger=False, callbacks=[curve],
                               trainer_kwargs={**limits, "num_sanity_val_steps": 0})  # fmt: skip
    run.fit(trainer, module, datamodule, seed)
    return curve.values


def _add_warmup_cosine(module: pl.LightningModule) -> None:
    """The baseline's optimizer with the same warmup_cosine schedule Stacey uses, stepped per step."""
    from torch.optim.lr_scheduler import LambdaLR

    from stacey_lightning.lightning.schedule import WarmupCosine

    build = module.configure_optimizers

    def configure_optimizers() -> dict[str, Any]:
        optimizer = build()["optimizer"]
        total = int(module.trainer.estimated_stepping_batches)
        factor = WarmupCosine(round(WARMUP_COSINE["warmup_fraction"] * total), total, WARMUP_COSINE["min_lr_ratio"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": LambdaLR(optimizer, factor), "interval": "step"}}

    module.configure_optimizers = configure_optimizers


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per run (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown file (default: %(default)s)")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="PNG figure (default: %(default)s)")
    add_threads_argument(parser)
    parser.add_argument("--smoke", action="store_true", help="1 epoch of 3 batches of a tiny model")
    return parser.parse_args(argv)


def measure(arguments: argparse.Namespace, workdir: Path) -> dict[str, dict[str, list[list[float]]]]:
    runs: dict[str, dict[str, list[list[float]]]] = {}
    rows = [*(("stacey", name, options) for name, options in CONFIGS.items()),
            *((name, name, options) for name, options in BASELINES.items())]  # fmt: skip
    for seed in range(arguments.seeds):
        for optimizer, name, options in rows:
            for schedule in SCHEDULES:
                if optimizer != "stacey" and schedule.endswith("follows lr"):
                    continue  # tau is Stacey's
                curve = _run(optimizer, options, schedule, seed, arguments)
                runs.setdefault(name, {}).setdefault(schedule, []).append(curve)
                print(f"[schedules] {name} / {schedule} / seed {seed}: val_bpc {curve[-1]:.4f}", flush=True)
    _plot(runs, arguments.figure)
    return runs


def _plot(runs: dict[str, dict[str, list[list[float]]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.4), sharey=True, squeeze=False)
    for axis, (name, schedules) in zip(axes[0], runs.items()):
        for schedule, curves in schedules.items():
            mean = [statistics.fmean(values) for values in zip(*curves)]
            axis.plot(range(1, len(mean) + 1), mean, marker="o", markersize=3, label=schedule)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("val_bpc (lower is better)")
    axes[0][0].legend(fontsize=7)
    figure.suptitle("textlm: constant lr against warmup + cosine, tau constant or following lr", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def render(arguments: argparse.Namespace, runs: dict[str, dict[str, list[list[float]]]]) -> str:
    lines = [
        f"Final val_bpc (lower is better), mean over {arguments.seeds} seed(s); figure: `{arguments.figure.name}`.",
        "",
        "| configuration | " + " | ".join(SCHEDULES) + " |",
        "|---|" + "---|" * len(SCHEDULES),
    ]
    for name, schedules in runs.items():
        cells = [f"{statistics.fmean(c[-1] for c in schedules[s]):.4f}" if s in schedules else "" for s in SCHEDULES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    described = "; ".join(f"{name}: `{options}`" for name, options in {**CONFIGS, **BASELINES}.items())
    lines += ["", f"Configurations: {described}. Schedule: warmup_cosine, 5% warmup, cosine to 0, per optimizer step."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Run the benchmark, print the report and write it to ``--output``; return the report."""
    title = "Schedules with Stacey's tau: constant lr against warmup + cosine"
    return run_benchmark("schedules.py", title, argv, parse_arguments, measure, render)


if __name__ == "__main__":
    main()
