"""stacey-lightning: the Stacey optimizer for PyTorch Lightning, with Optuna tuning of its geometry p.

Layers, lowest first (each imports only the ones below it): ``optim`` (the optimizer), ``lightning``
(config, parameter groups, schedules, the mixin, the monitor), ``tasks`` (built-in tasks), ``run`` and
``baselines`` (one training run of a task, with Stacey or another optimizer), ``tuner`` (Optuna
studies), ``finder`` (the geometry in 1.5 runs, as lr_find), ``compare`` and ``report`` (comparisons and
study reports), ``cli`` (the commands).

Public names are imported on first use, so that ``import stacey_lightning`` (and every command's
``--help``) loads neither torch, Lightning nor Optuna.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = [
    "Stacey",
    "StaceyConfig",
    "StaceyMixin",
    "StaceyMonitor",
    "StaceyPruning",
    "SearchSpace",
    "tune",
    "find_geometry",
    "NoTrialSucceeded",
    "TooManyFailures",
    "StorageUnavailable",
    "StorageError",
    "SearchSpaceError",
]
__version__ = "0.2.0"

_EXPORTS = {
    "Stacey": "stacey_lightning.optim.optimizer",
    "StaceyConfig": "stacey_lightning.lightning.config",
    "StaceyMixin": "stacey_lightning.lightning.mixin",
    "StaceyMonitor": "stacey_lightning.lightning.monitor",
    "StaceyPruning": "stacey_lightning.tuner.pruning",
    "SearchSpace": "stacey_lightning.tuner.search_space",
    "tune": "stacey_lightning.tuner.study",
    "find_geometry": "stacey_lightning.finder",
    # What a study raises that a caller may catch (stacey-tune prints each as one line).
    "NoTrialSucceeded": "stacey_lightning.tuner.study",  # every trial of the study failed
    "TooManyFailures": "stacey_lightning.tuner.workers",  # trials failed, or worker processes died, in a row
    "StorageUnavailable": "stacey_lightning.tuner.outage",  # the storage stayed out of reach past the limit
    "StorageError": "stacey_lightning.tuner.storage",  # a storage that cannot be opened (a ValueError)
    "SearchSpaceError": "stacey_lightning.tuner.distributions",  # a search space that cannot be used (a ValueError)
}

if TYPE_CHECKING:  # the same names for type checkers and IDEs, which do not run __getattr__
    from stacey_lightning.finder import find_geometry
    from stacey_lightning.lightning.config import StaceyConfig
    from stacey_lightning.lightning.mixin import StaceyMixin
    from stacey_lightning.lightning.monitor import StaceyMonitor
    from stacey_lightning.optim.optimizer import Stacey
    from stacey_lightning.tuner.distributions import SearchSpaceError
    from stacey_lightning.tuner.outage import StorageUnavailable
    from stacey_lightning.tuner.pruning import StaceyPruning
    from stacey_lightning.tuner.search_space import SearchSpace
    from stacey_lightning.tuner.storage import StorageError
    from stacey_lightning.tuner.study import NoTrialSucceeded, tune
    from stacey_lightning.tuner.workers import TooManyFailures


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stacey_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
