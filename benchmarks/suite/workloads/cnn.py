"""Convolutional networks: ``digits-cnn`` (2-D, scikit-learn's 8x8 digits as images) and ``mnist1d-cnn``
(1-D, on the generated MNIST-1D-like signals). Each ends in a hidden fully connected layer before the
classifier, as LeNet does; it is also what an optimizer for hidden matrices (``muon``) works on, since the
convolutions are not 2-D."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmarks.suite.datasets.signals import CLASSES, LENGTH, mnist1d
from benchmarks.suite.training import SuiteModule, TensorDataModule
from stacey_lightning.tasks import build_seeded, named_options
from stacey_lightning.tasks.digits import DigitsDataModule

__all__ = ["ImageCNN", "SignalCNN", "make_digits_cnn", "make_mnist1d_cnn"]


def _classifier(features: int, hidden: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


class ImageCNN(nn.Module):
    """(batch, 64) pixels as (batch, 1, 8, 8) images -> two 3x3 convolutions (``channels``, then twice as
    many), 2x2 max pooling -> ``hidden`` ReLU units -> logits over 10 digits."""

    def __init__(self, channels: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = _classifier(2 * channels * 4 * 4, hidden, 10)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(pixels.view(-1, 1, 8, 8)).flatten(1))


class SignalCNN(nn.Module):
    """(batch, LENGTH) signals -> a width-5 convolution, then two width-3 convolutions of stride 2 (each
    halves the length) -> ``hidden`` ReLU units -> logits over ``CLASSES``."""

    def __init__(self, channels: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(1, channels, 5, padding=2), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.classifier = _classifier(channels * LENGTH // 4, hidden, CLASSES)

    def forward(self, signals: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(signals.unsqueeze(1)).flatten(1))


@named_options("digits-cnn")
def make_digits_cnn(trial=None, seed: int = 0, channels: int = 16, batch_size: int = 32):
    """Digits as 8x8 images, ``ImageCNN``. Monitor val_acc, maximize."""
    module = build_seeded(seed, lambda: SuiteModule(ImageCNN(channels), "classification"))
    return module, DigitsDataModule(batch_size=batch_size, seed=seed)


@named_options("mnist1d-cnn")
def make_mnist1d_cnn(trial=None, seed: int = 0, channels: int = 32, samples: int = 4000, batch_size: int = 64):
    """MNIST-1D-like signals (``samples`` in all, 80% to train), ``SignalCNN``. Monitor val_acc, maximize."""
    module = build_seeded(seed, lambda: SuiteModule(SignalCNN(channels), "classification"))
    return module, TensorDataModule(partial(mnist1d, samples), batch_size, seed)
