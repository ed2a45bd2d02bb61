"""stacey-lightning: the Stacey optimizer for PyTorch Lightning, with Optuna tuning of its geometry p."""

from stacey_lightning.optimizer import Stacey

__all__ = ["Stacey"]
__version__ = "0.1.0"
