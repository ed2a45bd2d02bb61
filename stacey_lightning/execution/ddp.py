"""Plain DDP: global rank 0 owns the trial, the other ranks follow it.

Lightning's subprocess launcher (strategy "ddp", ModelParallelStrategy) and torchrun run the user's
script on every rank, so every rank calls ``tune``. Global rank 0 owns the study: it asks for each
trial and marks the trials it trains with ``DDP_KEY`` and ``DDP_RUN``. The other ranks find each
such trial in the storage, build the same module with its parameters (``optuna.trial.FixedTrial``)
and config, join the same training run, and leave when rank 0 records, as a study attribute, how
many runs it made. ``ddp_spawn`` needs none of this: its ranks are started inside ``fit``.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from typing import Any

import optuna

from stacey_lightning.attributes import DDP_DONE_PREFIX, DDP_KEY, DDP_RUN

__all__ = ["is_follower_rank", "RankZero", "follow_rank_zero", "next_call"]

_POLL_S = 0.2
# Every rank of a plain-DDP job calls tune() equally often: the call's index is part of the job's key.
_calls = itertools.count()


def next_call() -> int:
    """Count a call of ``tune`` in this process (on every rank alike)."""
    return next(_calls)


def is_follower_rank() -> bool:
    """True on every rank but global rank 0 of a plain-DDP job (torchrun sets RANK; Lightning's
    launcher sets LOCAL_RANK and NODE_RANK in its children, and 0, 0 in rank 0 after the first fit)."""
    return any(int(os.environ.get(name, 0)) != 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _group() -> str:
    """A key shared by the ranks of one plain-DDP job and by no other job.

    Under torchrun every rank sees the same run id and address; under Lightning's launcher rank 0
    sets STACEY_TUNE_GROUP before its first fit and the children inherit it.
    """
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun-" + "-".join(
            os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")
        )
    return os.environ.setdefault("STACEY_TUNE_GROUP", uuid.uuid4().hex)


def job_key(call: int) -> str:
    return f"{_group()}/{call}"


def _spawns_processes(trainer: Any) -> bool:
    """True for ddp_spawn-like launchers, which run every rank inside trainer.fit of this process."""
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


class RankZero:
    """What global rank 0 tells the other ranks of its job: which trials it trains, and when it is done."""

    def __init__(self, call: int) -> None:
        self.key = job_key(call)
        self.runs = 0
        self.used = False

    def announce(self, trial: optuna.Trial, trainer: Any) -> None:
        """Mark ``trial`` for the other ranks if ``trainer`` runs them from the user's script."""
        if trainer.world_size > 1 and not _spawns_processes(trainer):
            self.used = True
            trial.set_user_attr(DDP_KEY, self.key)
            trial.set_user_attr(DDP_RUN, self.runs)
            self.runs += 1

    def finish(self, study: optuna.Study) -> None:
        if self.used:
            study.set_user_attr(DDP_DONE_PREFIX + self.key, self.runs)


def follow_rank_zero(storage: Any, study_name: str, call: int, train: Any) -> optuna.Study:
    """On a follower rank: ``train(frozen_trial)`` for every trial rank 0 trains, until it is done."""
    key = job_key(call)
    parent = os.getppid()
    study = None
    run = 0
    while True:
        study = study or _wait_for_study(storage, study_name, parent)
        if study.user_attrs.get(DDP_DONE_PREFIX + key) == run:
            return study
        trial = next(
            (
                t
                for t in study.get_trials(deepcopy=False)
                if t.user_attrs.get(DDP_KEY) == key and t.user_attrs.get(DDP_RUN) == run
            ),
            None,
        )
        if trial is None:
            _check_parent(parent)
            time.sleep(_POLL_S)
            continue
        train(trial)
        run += 1


def _check_parent(parent: int) -> None:
    if os.getppid() != parent:
        raise RuntimeError("stacey-tune: rank 0 of this DDP job died; stopping this rank")


def _wait_for_study(storage: Any, name: str, parent: int) -> optuna.Study:
    while True:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            _check_parent(parent)
            time.sleep(_POLL_S)
