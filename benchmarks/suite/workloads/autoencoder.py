"""``digits-autoencoder``: an MLP autoencoder that squeezes scikit-learn's 8x8 digits (standardised, as the
``digits`` task loads them) through a code of 8 numbers and rebuilds them."""

from __future__ import annotations

from torch import nn

from benchmarks.suite.training import SuiteModule
from benchmarks.suite.workloads.mlp import mlp
from stacey_lightning.tasks import build_seeded, named_options
from stacey_lightning.tasks.digits import DigitsDataModule

__all__ = ["make_digits_autoencoder"]


@named_options("digits-autoencoder")
def make_digits_autoencoder(trial=None, seed: int = 0, hidden: int = 64, code: int = 8, batch_size: int = 32):
    """Encoder 64 -> hidden -> code, decoder code -> hidden -> 64 (one hidden layer each). Monitor val_loss
    (mean squared reconstruction error per standardised pixel), minimize."""
    network = lambda: nn.Sequential(mlp(64, hidden, code, depth=1), mlp(code, hidden, 64, depth=1))
    module = build_seeded(seed, lambda: SuiteModule(network(), "reconstruction"))
    return module, DigitsDataModule(batch_size=batch_size, seed=seed)
