"""Import paths of modules that moved when the package was split into optim, lightning, tuner and compare.

``import stacey_lightning.config`` (and the other old paths below) still works: it gives the module
at its new path, with a DeprecationWarning that names it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType

MOVED = {
    "stacey_lightning.optimizer": "stacey_lightning.optim.optimizer",
    "stacey_lightning.config": "stacey_lightning.lightning.config",
    "stacey_lightning.mixin": "stacey_lightning.lightning.mixin",
    "stacey_lightning.param_groups": "stacey_lightning.lightning.param_groups",
    "stacey_lightning.schedule": "stacey_lightning.lightning.schedule",
    "stacey_lightning.monitor": "stacey_lightning.lightning.monitor",
    "stacey_lightning.pruning": "stacey_lightning.tuner.pruning",
    "stacey_lightning.search_space": "stacey_lightning.tuner.search_space",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {MOVED[spec.name]}; import it from there", DeprecationWarning, stacklevel=2
        )
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        """The module at the new path is already executed."""


def install_moved_modules() -> None:
    """Let the old import paths resolve (once per process)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
