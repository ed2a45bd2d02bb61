"""Tuning: ``tune``, the door to an Optuna study over Stacey's geometry and step sizes (or a baseline
optimizer's options), and one trial's Lightning glue.

Modules: ``tuning`` (``tune``, ``run_study``: the orchestration), ``workers`` (the loop that asks
``study.admission`` which trial may start and trains it), ``trial`` (one trial: sample, train, record),
``pruning`` (the Lightning callback), ``best_checkpoint`` (best.ckpt: which trial's model is kept) and
``outputs`` (progress lines, best.yaml, tables). What a trial samples is in ``stacey_lightning.search``,
the study's rules in ``stacey_lightning.study``, running across processes and hosts in
``stacey_lightning.execution``.

The names below are imported on first use: the command line reads ``attributes`` without loading Optuna.
"""

from __future__ import annotations

import importlib

__all__ = [
    "tune",
    "SearchSpace",
    "BaselineSpace",
    "SearchSpaceError",
    "StaceyPruning",
    "summary_table",
    "mask_password",
    "StorageError",
    "StorageUnavailable",
    "TooManyFailures",
    "NoTrialSucceeded",
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_GRACE_S",
]

_EXPORTS = {
    "tune": "stacey_lightning.tuner.tuning",
    "NoTrialSucceeded": "stacey_lightning.tuner.tuning",
    "SearchSpace": "stacey_lightning.search.space",
    "BaselineSpace": "stacey_lightning.search.baseline_space",
    "SearchSpaceError": "stacey_lightning.search.distributions",
    "StaceyPruning": "stacey_lightning.tuner.pruning",
    "summary_table": "stacey_lightning.tuner.outputs",
    "mask_password": "stacey_lightning.execution.storage",
    "StorageError": "stacey_lightning.execution.storage",
    "StorageUnavailable": "stacey_lightning.execution.outage",
    "HEARTBEAT_INTERVAL_S": "stacey_lightning.execution.storage",
    "HEARTBEAT_GRACE_S": "stacey_lightning.execution.storage",
    "TooManyFailures": "stacey_lightning.execution.supervisor",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
