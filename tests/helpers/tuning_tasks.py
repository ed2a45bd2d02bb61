"""Tiny tasks for the tuner's tests, importable by the subprocesses the tests start (DDP, workers)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from sharding import shard_layers

from stacey_lightning.tasks.digits import DigitsModule, make_digits

TINY = {"foreach": True, "hidden": 8}  # foreach: no compile time in every subprocess
# A few batches per epoch: trials of seconds.
FAST = dict(max_epochs=2, trainer_kwargs={"limit_train_batches": 10, "limit_val_batches": 3, "log_every_n_steps": 5})


class _RecordingModule(DigitsModule):
    """Writes, on every rank, the Stacey config it trains with (to compare ranks)."""

    record_dir: str = ""

    def on_fit_start(self) -> None:
        line = {"rank": self.global_rank, "pid": os.getpid(), "config": self.stacey_config().to_dict()}
        with open(Path(self.record_dir) / f"rank-{self.global_rank}.jsonl", "a") as handle:
            handle.write(json.dumps(line) + "\n")


class _ShardedRecordingModule(_RecordingModule):
    """Shards itself with FSDP2 (fully_shard over the data-parallel mesh) under ModelParallelStrategy."""

    def configure_model(self) -> None:
        shard_layers(self, self.net)


def make_recording(trial=None, record_dir: str = ".", sharded: bool = False, foreach: bool = True):
    module, datamodule = make_digits(trial, **{**TINY, "foreach": foreach})
    module.__class__ = _ShardedRecordingModule if sharded else _RecordingModule
    module.record_dir = record_dir
    return module, datamodule


class _NanModule(DigitsModule):
    def training_step(self, batch, batch_idx):
        return super().training_step(batch, batch_idx) * torch.tensor(float("nan"))


def make_nan(trial=None):
    module, datamodule = make_digits(trial, **TINY)
    module.__class__ = _NanModule
    return module, datamodule


def make_failing_first(trial=None):
    """Raises for trial 0 only."""
    if trial is not None and trial.number == 0:
        raise RuntimeError("task failure on purpose")
    return make_digits(trial, **TINY)


def make_always_failing(trial=None):
    raise RuntimeError("task failure on purpose")


class _HangingModule(DigitsModule):
    def on_fit_start(self) -> None:
        Path(os.environ["STACEY_TEST_HANG"]).touch()  # tells the test the trial is running
        time.sleep(600)


def make_hanging_second(trial=None):
    """Trial 1 hangs while STACEY_TEST_HANG names a marker file (the test SIGKILLs the worker then)."""
    module, datamodule = make_digits(trial, **TINY)
    if trial is not None and trial.number == 1 and os.environ.get("STACEY_TEST_HANG"):
        module.__class__ = _HangingModule
    return module, datamodule


def make_sampling_hidden(trial=None, seed: int = 0, foreach: bool = True):
    """Digits whose hidden width the task samples itself on the trial (a task parameter, not Stacey's)."""
    hidden = trial.suggest_int("hidden", 4, 16) if trial is not None else 8
    return make_digits(trial, hidden=hidden, seed=seed, foreach=foreach)


def make_rendezvous(trial=None, rendezvous_dir: str = ".", workers: int = 2, seed: int = 0):
    """Digits that, before building, waits (up to 60 s) until ``workers`` distinct processes have started
    a trial: a study run by fewer worker processes than asked cannot get past it in time."""
    directory = Path(rendezvous_dir)
    (directory / str(os.getpid())).touch()
    deadline = time.monotonic() + 60
    while len(list(directory.iterdir())) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    return make_digits(trial, seed=seed, **TINY)
