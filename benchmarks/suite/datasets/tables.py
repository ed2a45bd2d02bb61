"""Two of scikit-learn's bundled tables (they ship with scikit-learn: no download).

- ``breast_cancer``: 569 tumours, 30 features, benign or malignant (classification).
- ``diabetes``: 442 patients, 10 features, disease progression a year later (regression).

Split: a fixed 80/20 train/validation split (seed 0, the same for every run). Features, and the regression
target, are standardised with the training split's mean and standard deviation.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes

__all__ = ["breast_cancer", "diabetes", "VALIDATION_FRACTION"]

VALIDATION_FRACTION = 0.2
_SPLIT_SEED = 0


def breast_cancer() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Features float32 (n, 30), labels int64 (n,) in {0, 1}."""
    features, labels = load_breast_cancer(return_X_y=True)
    train, validation = _holdout(len(labels))
    features = _standardised(features, train)
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return (features[train], labels[train]), (features[validation], labels[validation])


def diabetes() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Features float32 (n, 10), standardised targets float32 (n, 1): a mean squared error of 1 is the
    training mean's."""
    features, targets = load_diabetes(return_X_y=True)
    train, validation = _holdout(len(targets))
    features, targets = _standardised(features, train), _standardised(targets[:, None], train)
    return (features[train], targets[train]), (features[validation], targets[validation])


def _holdout(size: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(_SPLIT_SEED).permutation(size)
    validation_size = int(size * VALIDATION_FRACTION)
    return order[validation_size:], order[:validation_size]


def _standardised(columns: np.ndarray, train: np.ndarray) -> torch.Tensor:
    mean, std = columns[train].mean(axis=0), columns[train].std(axis=0)
    return torch.as_tensor((columns - mean) / np.where(std > 0, std, 1.0), dtype=torch.float32)
