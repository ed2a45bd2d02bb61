"""Tuning: Optuna studies over Stacey's geometry and step sizes (or a baseline's options), one Lightning
run per trial.

Modules, lowest first: ``attributes`` (what a study records), ``distributions``, ``search_space`` and
``baseline_space`` (what a trial samples), ``anchors``, ``samplers`` (samplers and pruners by name),
``spec`` (``StudySpec``: one study, checked once), ``budget`` (budgets in epochs), ``confirm`` (the top
candidates on other seeds; the winner), ``calibration``, ``outage`` (riding out a storage outage),
``storage`` (opening studies, counting trials, dead workers), ``pruning`` (the Lightning callback),
``ddp`` (rank 0 owns the trial), ``best_checkpoint`` (best.ckpt: which trial's model is kept),
``trial`` (one trial), ``outputs`` (progress, best.yaml, tables), ``workers`` and ``study`` (``tune``,
``run_study``: the orchestration).

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
    "tune": "study",
    "NoTrialSucceeded": "study",
    "SearchSpace": "search_space",
    "BaselineSpace": "baseline_space",
    "SearchSpaceError": "distributions",
    "StaceyPruning": "pruning",
    "summary_table": "outputs",
    "mask_password": "storage",
    "StorageError": "storage",
    "StorageUnavailable": "outage",
    "HEARTBEAT_INTERVAL_S": "storage",
    "HEARTBEAT_GRACE_S": "storage",
    "TooManyFailures": "workers",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
