"""The optimizer: ``Stacey`` (validation, state, dispatch) and ``stacey``, its functional form."""

from stacey_lightning.optim.optimizer import VARIANTS, Stacey, stacey

__all__ = ["Stacey", "stacey", "VARIANTS"]
