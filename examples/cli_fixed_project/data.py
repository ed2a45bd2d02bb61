"""The datamodule of the project: scikit-learn's 8x8 digits (shipped with scikit-learn, no download),
a fixed 80/20 split, pixels standardised with the training split's statistics."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset


class Digits(pl.LightningDataModule):
    """Args:
    batch_size: images per training batch.
    """

    def __init__(self, batch_size: int = 32) -> None:
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage: str) -> None:
        images, labels = load_digits(return_X_y=True)
        images, labels = torch.tensor(images, dtype=torch.float32), torch.tensor(labels)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))  # the same split every run
        train, val = order[: int(0.8 * len(order))], order[int(0.8 * len(order)) :]
        mean, std = images[train].mean(0), images[train].std(0) + 1e-6
        images = (images - mean) / std
        self.train_set = TensorDataset(images[train], labels[train])
        self.val_set = TensorDataset(images[val], labels[val])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)
