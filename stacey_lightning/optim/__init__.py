"""The optimizer: ``Stacey`` (validation, state, dispatch) and ``stacey``, its functional form."""

from stacey_lightning.optim._functional import stacey
from stacey_lightning.optim.optimizer import VARIANTS, Stacey

__all__ = ["Stacey", "stacey", "VARIANTS"]
