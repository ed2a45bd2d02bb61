"""Train a small regression model with Stacey (through StaceyMixin) and save each rank's parameters and
optimizer state. Used by tests/lightning/test_strategies.py; a script file with a __main__ guard because Lightning's
ddp strategy re-runs it in every child process.

    python tests/helpers/ddp_train.py --devices 2 --out DIR    # writes DIR/rank0.pt and DIR/rank1.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning.pytorch as pl
import torch
from sharding import rank_loader
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import StaceyMixin

SAMPLES = 64
GLOBAL_BATCH = 16
CONFIG = {"p": 3.0, "lr": 0.02, "weight_decay": 0.01, "schedule": {"name": "warmup_cosine", "warmup_steps": 2}}


class Regression(StaceyMixin, pl.LightningModule):
    """MLP 8 -> 16 -> 1 fitting a fixed random linear target with mean squared error."""

    def __init__(self) -> None:
        super().__init__()
        # foreach: no compile in each of the processes.
        self.save_hyperparameters({"foreach": True})
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.set_stacey_config(CONFIG)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.net(inputs).float(), targets)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randn(SAMPLES, 8, generator=generator)
        dataset = TensorDataset(inputs, inputs @ torch.randn(8, 1, generator=generator))
        return rank_loader(dataset, self.trainer, GLOBAL_BATCH)


def train(devices: int = 1, max_epochs: int = 2, **trainer_options) -> tuple[Regression, pl.Trainer]:
    """Fit with the same global batch whatever the number of devices."""
    pl.seed_everything(0)
    module = Regression()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=max_epochs,
        deterministic=True,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **trainer_options,
    )
    trainer.fit(module)
    return module, trainer


def saved_state(module: Regression, trainer: pl.Trainer) -> dict:
    return {
        "params": {name: tensor.clone() for name, tensor in module.state_dict().items()},
        "optimizer": trainer.optimizers[0].state_dict(),
        "global_step": trainer.global_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    module, trainer = train(args.devices)
    torch.save(saved_state(module, trainer), args.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main()
