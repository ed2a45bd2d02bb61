"""``tune``: an Optuna study over Stacey's p, lr, alpha and tau (and the rest of a search space), or over a
baseline optimizer's options, one Lightning training run per trial; resumable, parallel, and safe
against dead workers. This module is the orchestration only; each step lives in its own module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from stacey_lightning import run
from stacey_lightning.baselines import STACEY
from stacey_lightning.tasks import check_task_options, resolve_task
from stacey_lightning.tuner import ddp, outputs
from stacey_lightning.tuner.anchors import anchors_for, enqueue_anchors
from stacey_lightning.tuner.attributes import FAIL_REASON, SURPLUS, Settings
from stacey_lightning.tuner.baseline_space import BaselineSpace
from stacey_lightning.tuner.samplers import check_choice
from stacey_lightning.tuner.search_space import SearchSpace
from stacey_lightning.tuner.storage import describe, finished, open_storage, open_study
from stacey_lightning.tuner.trial import train_as_follower
from stacey_lightning.tuner.workers import TooManyFailures, Worker, run_worker_processes

__all__ = ["tune", "NoTrialSucceeded", "TooManyFailures"]


class NoTrialSucceeded(RuntimeError):
    """Raised when a study ends with failed trials and none that completed or was pruned."""


def tune(
    task: str | Callable,
    space: str | os.PathLike | Mapping | SearchSpace | BaselineSpace | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    monitor: str | None = None,
    direction: str | None = None,
    max_epochs: int = 10,
    sampler: str | optuna.samplers.BaseSampler | None = None,
    pruner: str | optuna.pruners.BasePruner | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    workers: int = 1,
    output_dir: str | os.PathLike = "stacey_runs",
    seed: int = 0,
    task_options: Mapping[str, Any] | None = None,
    max_consecutive_failures: int = 5,
    *,
    optimizer: str = STACEY,
    geometry: bool = False,
    anchors: bool = True,
) -> optuna.Study:
    """Tune Stacey (or a baseline optimizer) on ``task`` and return the ``optuna.Study``.

    On Ctrl-C the running trial is failed and re-queued, ``best.yaml`` and the table are written from
    the finished trials, and KeyboardInterrupt is raised again; calling ``tune`` again resumes.

    Args:
        task: a built-in task name ("digits", "textlm", "cifar10"), "package.module:callable", or a
            callable ``make(trial=None, seed=0, **options) -> (LightningModule, LightningDataModule)``
            whose module uses ``StaceyMixin``.
        space: for Stacey, a search-space preset name, the path of a YAML file, or a mapping (default:
            the task's preset); for a baseline, a YAML file or mapping of its options' distributions
            (default: its entry in the ``baselines`` preset). Validated before any trial runs.
        n_trials: how many COMPLETE or PRUNED trials the study should have; failed trials do not count.
            A re-run resumes up to it. Default 20.
        timeout: seconds after which no new trial starts (running trials finish). Default None.
        storage: a database URL (sqlite:///..., postgresql://user:password@host/db), "journal:PATH",
            or an optuna storage; default ``sqlite:///<output_dir>/optuna.db``.
        study_name: default: the task's name (with the baseline's name appended for a baseline).
        monitor, direction: the logged metric and "maximize"/"minimize"; default: the task's.
        max_epochs: epochs per trial, the pruner's full budget. Default 10.
        sampler: a name ("tpe", "gp", "cmaes", "random", "qmc"), a class path or a sampler; see
            ``samplers``. Default "tpe".
        pruner: a name ("hyperband", "median", "none"), a class path or a pruner. Default "hyperband".
        trainer_kwargs: extra ``lightning.Trainer`` arguments (accelerator, devices, strategy, ...);
            ``callbacks`` are added to the tuner's own.
        workers: worker processes on this machine sharing the storage. Default 1 (this process).
        output_dir: where the SQLite file, ``best.yaml`` and ``tensorboard/<study>/trial-<n>`` go.
        seed: seeds the sampler, ``seed_everything`` and the task's ``make(seed=...)``. Default 0.
        task_options: keyword arguments for the task's ``make``, checked against its signature first.
        max_consecutive_failures: a worker stops with ``TooManyFailures`` after this many trials in a
            row failed. Default 5.
        optimizer: "stacey" (default), or a baseline ("adamw", "sgd", "lion", or a class path) whose
            options the study tunes instead.
        geometry: add ``StaceyMonitor`` to every Stacey trial (p, step and ||x - z|| per group in
            TensorBoard). Default False.
        anchors: train the anchor points first (``anchors``: Lion-like and SGD-like configurations on a
            short lr ladder and the space's centre; a baseline's defaults), enqueued once, when the study
            is created. Default True.

    Raises:
        ValueError: a bad argument, space, task option or storage, before any trial runs.
        TooManyFailures: ``max_consecutive_failures`` trials in a row failed.
        NoTrialSucceeded: every trial of the study failed.
    """
    call = ddp.next_call()
    resolved = resolve_task(task)
    n_trials, max_epochs = run.smoke_budget(n_trials, max_epochs)
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    if n_trials < 1:
        raise ValueError(f"n_trials: must be >= 1, got {n_trials}")
    if max_epochs < 1:
        raise ValueError(f"max_epochs: must be >= 1, got {max_epochs}")
    direction = direction or resolved.direction
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction: must be 'maximize' or 'minimize', got {direction!r}")
    check_choice(sampler, "sampler")
    check_choice(pruner, "pruner")
    task_options = dict(task_options or {})
    check_task_options(resolved, task_options)
    if optimizer == STACEY:
        loaded = SearchSpace.load(space if space is not None else resolved.space)
    else:
        loaded = BaselineSpace.load(optimizer, space)
    output_dir = Path(output_dir)
    settings = Settings(
        task=task,
        optimizer=optimizer,
        space=loaded,
        n_trials=n_trials,
        timeout=timeout,
        storage=storage if storage is not None else f"sqlite:///{output_dir.resolve()}/optuna.db",
        study_name=study_name or (resolved.name if optimizer == STACEY else f"{resolved.name}-{optimizer}"),
        monitor=monitor or resolved.monitor,
        direction=direction,
        max_epochs=max_epochs,
        sampler=sampler,
        pruner=pruner,
        trainer_kwargs=dict(trainer_kwargs or {}),
        output_dir=output_dir,
        seed=seed,
        task_options=task_options,
        max_consecutive_failures=max_consecutive_failures,
        geometry=geometry,
    )
    with outputs.quiet_libraries():
        # Every rank, before opening the storage: under torchrun a follower can start before rank 0 and
        # cannot open the default sqlite:///<output>/optuna.db in a folder that does not exist yet.
        output_dir.mkdir(parents=True, exist_ok=True)
        if ddp.is_follower_rank():
            return ddp.follow_rank_zero(
                open_storage(settings.storage),
                settings.study_name,
                call,
                lambda frozen: train_as_follower(settings, resolved.make, frozen),
            )
        study = open_study(settings, worker_index=0)
        if anchors:
            enqueue_anchors(study, anchors_for(optimizer, loaded), loaded, n_trials)
        print(
            f"[stacey-tune] study {settings.study_name!r} ({optimizer}) in {describe(settings.storage)}: "
            f"{finished(study.get_trials(deepcopy=False))} of {n_trials} trials finished, "
            f"monitor {settings.monitor} ({direction})",
            flush=True,
        )
        if workers == 1:
            interrupted = Worker(settings, call).run()
        else:
            interrupted = run_worker_processes(settings, workers, call)
        study = open_study(settings, worker_index=0)
        if interrupted:
            print("[stacey-tune] interrupted: every finished trial is kept; run the same command to resume", flush=True)
        outputs.write_best(study, output_dir, settings.monitor)
        print(outputs.summary_table(study, settings.monitor), flush=True)
    if interrupted:
        raise KeyboardInterrupt  # after the outputs are written: the caller (stacey-tune: status 130) stops too
    _check_some_trial_succeeded(study)
    return study


def _check_some_trial_succeeded(study: optuna.Study) -> None:
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed and not finished(trials):
        reason = failed[-1].user_attrs.get(FAIL_REASON, "no reason recorded")
        raise NoTrialSucceeded(f"all {len(failed)} trials failed; the last one (trial {failed[-1].number}): {reason}")
