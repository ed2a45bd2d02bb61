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
    "SearchSpace": "stacey_lightning.search.space",
    "tune": "stacey_lightning.tuner.tuning",
    "find_geometry": "stacey_lightning.finder",
    # What a study raises that a caller may catch (stacey-tune prints each as one line).
    "NoTrialSucceeded": "stacey_lightning.tuner.tuning",  # every trial of the study failed
    "TooManyFailures": "stacey_lightning.execution.supervisor",  # trials failed, or worker processes died, in a row
    "StorageUnavailable": "stacey_lightning.execution.outage",  # the storage stayed out of reach past the limit
    "StorageError": "stacey_lightning.execution.storage",  # a storage that cannot be opened (a ValueError)
    "SearchSpaceError": "stacey_lightning.search.distributions",  # a search space that cannot be used (a ValueError)
}

if TYPE_CHECKING:  # the same names for type checkers and IDEs, which do not run __getattr__
    from stacey_lightning.execution.outage import StorageUnavailable
    from stacey_lightning.execution.storage import StorageError
    from stacey_lightning.execution.supervisor import TooManyFailures
    from stacey_lightning.finder import find_geometry
    from stacey_lightning.lightning.config import StaceyConfig
    from stacey_lightning.lightning.mixin import StaceyMixin
    from stacey_lightning.lightning.monitor import StaceyMonitor
    from stacey_lightning.optim.optimizer import Stacey
    from stacey_lightning.search.distributions import SearchSpaceError
    from stacey_lightning.search.space import SearchSpace
    from stacey_lightning.tuner.pruning import StaceyPruning
    from stacey_lightning.tuner.tuning import NoTrialSucceeded, tune


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stacey_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
