"""stacey-lightning: the Stacey optimizer for PyTorch Lightning, with Optuna tuning of its geometry p.

Layers, lowest first (each imports only the ones below it): ``optim`` (the optimizer), ``lightning``
(config, parameter groups, schedules, the mixin, the monitor), ``tasks`` (built-in tasks), ``run`` and
``baselines`` (one training run of a task, with Stacey or another optimizer), ``tuner`` (Optuna
studies), ``compare`` and ``report`` (comparisons and study reports), ``cli`` (the commands).

Public names are imported on first use, so that ``import stacey_lightning`` (and every command's
``--help``) loads neither torch, Lightning nor Optuna.
"""

from __future__ import annotations

import importlib

__all__ = [
    "Stacey",
    "StaceyConfig",
    "StaceyMixin",
    "StaceyMonitor",
    "StaceyPruning",
    "SearchSpace",
    "tune",
    "find_geometry",
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
    "find_geometry": "stacey_lightning.tuner.finder",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stacey_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
