"""Every use of Optuna's private API (stacey_lightning/execution/optuna_private.py), checked against the installed
Optuna: a release that moves one fails here, not in a study."""

from __future__ import annotations

import importlib

import optuna
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from stacey_lightning.execution import optuna_private
from stacey_lightning.execution.optuna_private import (
    RDB_LOGGER,
    STALE_TRIAL_IDS,
    BaseHeartbeat,
    stale_trial_ids,
    storage_of,
    trial_id,
)


def test_storage_of_a_study_is_the_storage_it_was_opened_on():
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage)
    assert storage_of(study) is storage


def test_trial_id_is_what_the_storage_calls_the_trial():
    storage = InMemoryStorage()
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 1.0})
    live = study.ask()
    frozen = study.get_trials(deepcopy=False)[live.number]
    expected = storage.get_trial_id_from_study_id_trial_number(study._study_id, live.number)
    assert trial_id(live) == trial_id(frozen) == expected
    storage.set_trial_user_attr(trial_id(live), "k", 1)  # per-trial calls take it
    assert study.get_trials(deepcopy=False)[live.number].user_attrs == {"k": 1}


class _StaleAfterAll(InMemoryStorage, BaseHeartbeat):
    """A storage with heartbeats whose every running trial is stale, recording how Optuna asked."""

    def __init__(self):
        super().__init__()
        self.asked = []

    def _get_stale_trial_ids(self, study_id):
        self.asked.append(study_id)
        return [t._trial_id for t in self.get_all_trials(study_id, states=(TrialState.RUNNING,))]

    def record_heartbeat(self, trial_id):
        pass

    def get_heartbeat_interval(self):
        return 30

    def get_heartbeat_stale_trial_callback(self):
        return None


def test_fail_stale_trials_asks_a_heartbeat_storage_through_the_private_hook_we_override():
    storage = _StaleAfterAll()
    study = optuna.create_study(storage=storage)
    study.ask()
    optuna.storages.fail_stale_trials(study)
    assert storage.asked == [study._study_id]  # the hook RetryingStorage overrides is the one Optuna calls
    assert study.get_trials(deepcopy=False)[0].state == TrialState.FAIL
    assert STALE_TRIAL_IDS in vars(BaseHeartbeat)
    assert stale_trial_ids(storage, study._study_id) == []  # what the wrapper's call reaches


def test_optunas_rdb_storage_is_a_heartbeat_storage_and_logs_under_the_name_we_filter():
    assert issubclass(optuna.storages.RDBStorage, BaseHeartbeat)
    assert importlib.import_module(RDB_LOGGER)._logger.name == RDB_LOGGER


def test_the_adapter_names_each_use():
    assert set(optuna_private.__all__) == {
        "BaseHeartbeat", "STALE_TRIAL_IDS", "RDB_LOGGER", "storage_of", "trial_id", "stale_trial_ids",
    }  # fmt: skip
