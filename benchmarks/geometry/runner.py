"""Run single training runs for the geometry experiments and append each result to results.csv.

Usage: python benchmarks/geometry/runner.py EXP [EXP ...]   (experiment lists: benchmarks/geometry/experiments.py)
A run whose (exp, name) is already in the CSV is skipped, so an interrupted batch can be restarted.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from stacey_lightning.baselines import use_baseline
from stacey_lightning.tasks.digits import make_digits
from stacey_lightning.tasks.textlm import make_textlm

torch.set_num_threads(1)
warnings.filterwarnings("ignore")
logging.getLogger("lightning").setLevel(logging.ERROR)
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

HERE = Path(__file__).resolve().parent
CSV = HERE.parent / "results" / "geometry.csv"
FIELDS = [
    "exp",
    "name",
    "task",
    "optimizer",
    "seed",
    "epochs",
    "max_chars",
    "config",
    "metric",
    "value",
    "steps",
    "seconds",
    "extra",
]


class GradStats(Callback):
    """Typical per-coordinate magnitudes of g (gradient) and m (optimizer momentum) at a few steps."""

    def __init__(self, at=(5, 50, 150, 260), dump=None):
        self.at = set(at)
        self.dump = dump
        self.records = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        step = trainer.global_step
        if step not in self.at:
            return
        rec = {"step": step}
        for label, tensors in (
            ("g", [p.grad for p in module.parameters() if p.grad is not None]),
            (
                "m",
                [
                    optimizer.state[p]["m"]
                    for p in module.parameters()
                    if p in optimizer.state and "m" in optimizer.state[p]
                ],
            ),
            ("x", [p.detach() for p in module.parameters()]),
            (
                "c",
                [
                    0.9 * optimizer.state[p]["m"] + 0.1 * p.grad
                    for p in module.parameters()
                    if p in optimizer.state and "m" in optimizer.state[p]
                ],
            ),
        ):
            if not tensors:
                continue
            flat = torch.cat([t.reshape(-1).abs().float() for t in tensors])
            rec[label] = {
                "median": flat.median().item(),
                "mean": flat.mean().item(),
                "rms": flat.pow(2).mean().sqrt().item(),
                "p90": flat.quantile(0.9).item() if flat.numel() < 16_000_000 else None,
            }
        # per kind of parameter (matrix weights of the transformer blocks vs embeddings etc.)
        by = {}
        for name, p in module.named_parameters():
            if p.grad is None:
                continue
            key = "embed" if "embedding" in name else ("vector" if p.ndim <= 1 else "matrix")
            by.setdefault(key, []).append(p.grad.reshape(-1).abs())
        rec["g_by_kind_median"] = {k: torch.cat(v).median().item() for k, v in by.items()}
        if self.dump and step == max(self.at):
            c = {
                name: (0.9 * optimizer.state[p]["m"] + 0.1 * p.grad).clone()
                for name, p in module.named_parameters()
                if p in optimizer.state
            }
            torch.save(c, self.dump)
        self.records.append(rec)


def build(spec):
    seed = spec.get("seed", 0)
    pl.seed_everything(seed, verbose=False)
    if spec["task"] == "textlm":
        module, data = make_textlm(
            size="small", batch_size=16, max_chars=spec.get("max_chars", 60_000), seed=seed, foreach=True
        )
    else:
        module, data = make_digits(seed=seed, foreach=True)
    if spec["optimizer"] == "stacey":
        module.set_stacey_config(spec["config"])
    else:
        use_baseline(module, spec["optimizer"], spec["config"])
    return module, data


def run(spec):
    module, data = build(spec)
    callbacks = [GradStats(dump=spec.get("dump_c"))] if spec.get("grad_stats") else []
    trainer = pl.Trainer(
        max_epochs=spec.get("epochs", 5),
        max_steps=spec.get("max_steps", -1),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )
    metric = "val_bpc" if spec["task"] == "textlm" else "val_acc"
    started = time.monotonic()
    try:
        trainer.fit(module, data)
        if spec.get("max_steps"):  # stopped mid-epoch: validate the final weights explicitly
            value = float(trainer.validate(module, data, verbose=False)[0][metric])
        else:
            value = float(trainer.callback_metrics[metric])
    except Exception as error:  # divergence etc.: record and continue
        print("ERROR", spec["name"], type(error).__name__, error, flush=True)
        value = float("nan")
    seconds = time.monotonic() - started
    extra = {"grad_stats": callbacks[0].records} if callbacks else {}
    return {
        "metric": metric,
        "value": value,
        "steps": trainer.global_step,
        "seconds": round(seconds, 1),
        "extra": json.dumps(extra) if extra else "",
    }


def done():
    if not CSV.exists():
        return set()
    with CSV.open() as f:
        return {(r["exp"], r["name"]) for r in csv.DictReader(f)}


def main(exps):
    from experiments import EXPERIMENTS  # benchmarks/geometry/experiments.py

    finished = done()
    for exp in exps:
        for spec in EXPERIMENTS[exp]():
            if (exp, spec["name"]) in finished:
                continue
            result = run(spec)
            row = {
                "exp": exp,
                "name": spec["name"],
                "task": spec["task"],
                "optimizer": spec["optimizer"],
                "seed": spec.get("seed", 0),
                "epochs": spec.get("epochs", 5),
                "max_chars": spec.get("max_chars", 60_000) if spec["task"] == "textlm" else "",
                "config": json.dumps(spec["config"], default=str),
                **result,
            }
            new = not CSV.exists()
            with CSV.open("a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=FIELDS)
                if new:
                    writer.writeheader()
                writer.writerow(row)
            print(
                f"{exp:8s} {spec['name']:45s} {result['metric']} {result['value']:.4f} "
                f"steps {result['steps']} {result['seconds']}s",
                flush=True,
            )


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main(sys.argv[1:])
