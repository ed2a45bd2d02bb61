"""Every use of Optuna's private API, in one place, each with why no public API serves.

``optuna>=4.0,<6`` (pyproject.toml): a major release may move any of these. tests/execution/
test_optuna_private.py checks each against the installed Optuna, so that a release that changes one
fails a test, not a study.
"""

from __future__ import annotations

from typing import Any

import optuna

# Optuna's heartbeat interface. ``optuna.storages.fail_stale_trials`` fails a study's stale trials only when
# its storage is an instance of this class, and asks it for them through ``_get_stale_trial_ids``; our
# retrying wrapper (outage.RetryingStorage) must therefore be one, and implement that method, for RDB
# heartbeats to keep working through it. Optuna exports the class from no public module.
from optuna.storages._heartbeat import BaseHeartbeat

__all__ = ["BaseHeartbeat", "STALE_TRIAL_IDS", "RDB_LOGGER", "storage_of", "trial_id", "stale_trial_ids"]

# The method of BaseHeartbeat that fail_stale_trials calls (see above); RetryingStorage overrides it.
STALE_TRIAL_IDS = "_get_stale_trial_ids"
# The logger of RDBStorage's module: outage.py filters its multi-line "falling back" warning during outages.
RDB_LOGGER = "optuna.storages._rdb.storage"


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study was opened on. ``Study`` does not expose it, and the per-trial calls the tuner
    needs (a trial's heartbeat; failing a dead worker's trial by id without a ``Trial`` object; reading the
    user attributes a callback wrote mid-trial) are storage calls."""
    return study._storage


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (not its number), which every per-trial storage call takes. Neither
    ``Trial`` nor ``FrozenTrial`` exposes it publicly."""
    return trial._trial_id


def stale_trial_ids(storage: Any, study_id: int) -> list[int]:
    """``storage``'s trials whose heartbeat is stale: what ``fail_stale_trials`` would fail. A wrapper that
    overrides ``_get_stale_trial_ids`` calls its backend's through this."""
    return getattr(storage, STALE_TRIAL_IDS)(study_id)
