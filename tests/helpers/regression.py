"""A small regression module with StaceyMixin, and Trainer options that keep tests quiet."""

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import StaceyMixin

TRAINER_OPTIONS = dict(
    logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu"
)


class Regression(StaceyMixin, pl.LightningModule):
    def __init__(self, lr: float | None = None, p: float | None = None, foreach: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.net(inputs), targets)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(32, 4, generator=generator)
        return DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True)), batch_size=8)
