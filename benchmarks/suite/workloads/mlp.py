"""Multilayer perceptrons on scikit-learn's tables: ``cancer-mlp`` (classification) and ``diabetes-mlp``
(regression), both 2 hidden ReLU layers."""

from __future__ import annotations

from torch import nn

from benchmarks.suite.datasets.tables import breast_cancer, diabetes
from benchmarks.suite.training import SuiteModule, TensorDataModule
from stacey_lightning.tasks import build_seeded, named_options

__all__ = ["mlp", "make_cancer_mlp", "make_diabetes_mlp"]


def mlp(inputs: int, hidden: int, outputs: int, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden layers of ``hidden`` ReLU units between ``inputs`` and ``outputs`` (linear)."""
    widths = [inputs] + [hidden] * depth
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], outputs))


@named_options("cancer-mlp")
def make_cancer_mlp(trial=None, seed: int = 0, hidden: int = 64, batch_size: int = 32):
    """Breast cancer, benign or malignant: MLP 30 -> hidden -> hidden -> 2. Monitor val_acc, maximize."""
    module = build_seeded(seed, lambda: SuiteModule(mlp(30, hidden, 2), "classification"))
    return module, TensorDataModule(breast_cancer, batch_size, seed)


@named_options("diabetes-mlp")
def make_diabetes_mlp(trial=None, seed: int = 0, hidden: int = 64, batch_size: int = 32):
    """Diabetes progression (standardised): MLP 10 -> hidden -> hidden -> 1. Monitor val_loss (mean squared
    error, 1 = predicting the training mean), minimize."""
    module = build_seeded(seed, lambda: SuiteModule(mlp(10, hidden, 1), "regression"))
    return module, TensorDataModule(diabetes, batch_size, seed)
