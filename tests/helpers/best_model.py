"""The kept model of a study (tuner/best_checkpoint.py), read back as a user would: which trial it holds
and what it scores when loaded with ``load_from_checkpoint``."""

import json
from pathlib import Path

import lightning.pytorch as pl
import yaml
from tuning_tasks import TINY

from stacey_lightning.tasks.digits import DigitsModule, make_digits


def checkpoints(output: Path) -> list[Path]:
    """Every checkpoint (file, or FSDP2 folder) under ``output``."""
    return sorted(output.rglob("*.ckpt"))


def kept(output: Path) -> dict:
    """Which trial best.ckpt holds, as recorded next to it; best.yaml must name the same."""
    section = yaml.safe_load((output / "best.yaml").read_text())["checkpoint"]
    record = json.loads((output / "checkpoints" / "best.json").read_text())
    assert section == {"path": "best.ckpt", "trial": record["trial"]}
    return record


def quiet_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )  # fmt: skip


def validated(path: Path, limit_val_batches: int) -> float:
    """val_acc of the digits model loaded from ``path`` with ``load_from_checkpoint``."""
    module = DigitsModule.load_from_checkpoint(path)
    _, datamodule = make_digits(None, seed=0, **TINY)
    trainer = quiet_trainer(limit_val_batches=limit_val_batches)
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]["val_acc"]
