"""``adopt``: give any LightningModule Stacey at run time, without editing its class.

    module = adopt(Net())       # Net inherits LightningModule only
    module.set_stacey_config({"p": 3.0, "lr": 0.01})

The instance's class is swapped for a subclass made on the fly, ``StaceyMixin`` first in its bases,
so the module trains exactly as ``class Net(StaceyMixin, LightningModule)`` would: parameter groups
by kind, the config's schedule, ``set_stacey_config``. Its own ``configure_optimizers`` is replaced
(said once per class, as a warning); its own checkpoint hooks still run, before the mixin's. The
subclass pickles as the original class and is adopted again when unpickled (ddp_spawn, workers).

A module with manual optimization (``automatic_optimization = False``, which is also what several
optimizers need in Lightning 2) is refused with a ``ValueError``: Stacey's one optimizer cannot
stand in for the optimizers its ``training_step`` steps itself.
"""

from __future__ import annotations

import warnings
from typing import Any

from stacey_lightning.lightning.mixin import StaceyMixin

__all__ = ["adopt"]

_ADOPTED: dict[type, type] = {}  # original class -> its subclass with StaceyMixin
_WARNED: set[type] = set()


def adopt(module: Any) -> Any:
    """Give ``module`` (a LightningModule) StaceyMixin in place and return it; a module that has the
    mixin already is returned as it is.

    Raises:
        ValueError: the module uses manual optimization (or several optimizers).
    """
    if isinstance(module, StaceyMixin):
        return module
    original = type(module)
    if not getattr(module, "automatic_optimization", True):
        raise ValueError(
            f"{original.__name__} uses manual optimization (automatic_optimization = False), or several "
            "optimizers: Stacey can replace only the one optimizer of a module Lightning steps itself"
        )
    module.__class__ = adopted_class(original)
    if original not in _WARNED:
        _WARNED.add(original)
        warnings.warn(
            f"{original.__name__} has no StaceyMixin: its configure_optimizers is replaced by Stacey's, "
            "with parameter groups by kind (stacey_lightning.lightning.adopt)",
            UserWarning,
            stacklevel=2,
        )
    return module


def adopted_class(original: type) -> type:
    """The subclass of ``original`` with StaceyMixin first in its bases (one per class)."""
    if original not in _ADOPTED:
        _ADOPTED[original] = type(
            original.__name__,
            (StaceyMixin, original),
            {
                "__module__": original.__module__,
                "__qualname__": original.__qualname__,
                "_stacey_adopted_from": original,
                "__reduce__": _reduce,
                "on_save_checkpoint": _on_save_checkpoint,
                "on_load_checkpoint": _on_load_checkpoint,
            },
        )
    return _ADOPTED[original]


def _reduce(module: Any) -> tuple:
    # The subclass exists only in this process: pickle the instance as its original class.
    return _unpickle, (module._stacey_adopted_from, module.__getstate__())


def _unpickle(original: type, state: dict[str, Any]) -> Any:
    module = original.__new__(original)
    module.__setstate__(state)
    module.__class__ = adopted_class(original)
    return module


def _on_save_checkpoint(module: Any, checkpoint: dict[str, Any]) -> None:
    module._stacey_adopted_from.on_save_checkpoint(module, checkpoint)
    StaceyMixin.on_save_checkpoint(module, checkpoint)


def _on_load_checkpoint(module: Any, checkpoint: dict[str, Any]) -> None:
    module._stacey_adopted_from.on_load_checkpoint(module, checkpoint)
    StaceyMixin.on_load_checkpoint(module, checkpoint)
