"""One-dimensional signals in the spirit of MNIST-1D (Greydanus, 2020), generated here from fixed seeds.

Each of the ``CLASSES`` classes is a template: a smooth random curve of ``TEMPLATE_POINTS`` points. A
sample places its class's template in a window of ``LENGTH`` points after a random stretch, shift and
amplitude, then adds a random linear shear, white noise and correlated noise (a random walk). The shift
and the correlated noise are what make a convolution, which shares its weights across positions, better
suited than a plain MLP. The same sample count gives the same signals on every machine (numpy's PCG64).

Split: the first 80% of the samples train, the rest validate.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["mnist1d", "CLASSES", "LENGTH", "TEMPLATE_POINTS"]

CLASSES = 10
LENGTH = 40
TEMPLATE_POINTS = 12
_TEMPLATE_SEED = 1
_SAMPLE_SEED = 2
_TRAIN_FRACTION = 0.8


def mnist1d(samples: int = 4000) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Signals float32 (n, ``LENGTH``), labels int64 (n,) in [0, ``CLASSES``)."""
    if samples < 10:
        raise ValueError(f"Invalid samples: {samples} (need at least 10)")
    signals, labels = _generate(samples)
    boundary = int(samples * _TRAIN_FRACTION)
    return (signals[:boundary], labels[:boundary]), (signals[boundary:], labels[boundary:])


def _templates() -> np.ndarray:
    """(CLASSES, TEMPLATE_POINTS): random curves smoothed by a [1, 2, 1] filter, scaled to a peak of 1."""
    raw = np.random.default_rng(_TEMPLATE_SEED).normal(size=(CLASSES, TEMPLATE_POINTS + 2))
    smooth = 0.25 * raw[:, :-2] + 0.5 * raw[:, 1:-1] + 0.25 * raw[:, 2:]
    return smooth / np.abs(smooth).max(axis=1, keepdims=True)


def _generate(samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(_SAMPLE_SEED)
    labels = rng.integers(0, CLASSES, samples)
    stretch = rng.uniform(0.7, 1.3, (samples, 1))
    shift = rng.uniform(-0.2, 0.2, (samples, 1))
    amplitude = rng.uniform(0.8, 1.2, (samples, 1))
    shear = rng.uniform(-0.5, 0.5, (samples, 1))
    grid = np.linspace(0.0, 1.0, LENGTH)[None, :]
    # Where each output point falls on its template, in template points: at stretch 1 the template spans
    # the middle 60% of the window. Points outside the template are 0.
    position = ((grid - 0.5 - shift) / (0.6 * stretch) + 0.5) * (TEMPLATE_POINTS - 1)
    inside = (position >= 0) & (position <= TEMPLATE_POINTS - 1)
    left = np.clip(np.floor(position).astype(int), 0, TEMPLATE_POINTS - 2)
    fraction = np.clip(position - left, 0.0, 1.0)
    curves = _templates()[labels]
    rows = np.arange(samples)[:, None]
    placed = (curves[rows, left] * (1 - fraction) + curves[rows, left + 1] * fraction) * inside
    signals = amplitude * placed + shear * (grid - 0.5)
    signals += rng.normal(0.0, 0.25, signals.shape) + np.cumsum(rng.normal(0.0, 0.08, signals.shape), axis=1)
    return torch.as_tensor(signals, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)
