"""stacey-lightning: the Stacey optimizer for PyTorch Lightning, with Optuna tuning of its geometry p."""

from stacey_lightning.config import StaceyConfig
from stacey_lightning.mixin import StaceyMixin
from stacey_lightning.optimizer import Stacey

__all__ = ["Stacey", "StaceyConfig", "StaceyMixin", "StaceyMonitor", "tune"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The monitor imports Lightning; load it on first use so that `import stacey_lightning` stays light.
    if name == "StaceyMonitor":
        from stacey_lightning.monitor import StaceyMonitor

        return StaceyMonitor
    if name == "tune":  # imports Optuna and Lightning: also loaded on first use
        from stacey_lightning.tuner import tune

        return tune
    raise AttributeError(f"module 'stacey_lightning' has no attribute {name!r}")
