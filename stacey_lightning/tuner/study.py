"""``tune``: an Optuna study over Stacey's p, lr, alpha and tau (and the rest of a search space), or over a
baseline optimizer's options, one Lightning training run per trial; resumable, parallel, and safe
against dead workers. This module is the orchestration only; each step lives in its own module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from stacey_lightning.baselines import STACEY
from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import best_checkpoint, ddp, outputs
from stacey_lightning.tuner.anchors import Anchor, add_start_point, anchors_for, config_anchor, enqueue_anchors
from stacey_lightning.tuner.attributes import FAIL_REASON, SURPLUS
from stacey_lightning.tuner.baseline_space import BaselineSpace
from stacey_lightning.tuner.budget import over_budget
from stacey_lightning.tuner.calibration import study_gradient_scale
from stacey_lightning.tuner.confirm import search_spec, search_trials, winner
from stacey_lightning.tuner.search_space import SearchSpace
from stacey_lightning.tuner.spec import DEFAULT_STORAGE_OUTAGE_S, StudySpec, study_spec
from stacey_lightning.tuner.storage import describe, finished, is_surplus, open_storage, open_study
from stacey_lightning.tuner.trial import train_as_follower, trial_options
from stacey_lightning.tuner.workers import TooManyFailures, Worker, run_worker_processes

__all__ = ["tune", "run_study", "NoTrialSucceeded", "TooManyFailures"]


class NoTrialSucceeded(RuntimeError):
    """Raised when a study ends with failed trials and none that completed or was pruned."""


def tune(
    task: str | Callable,
    space: str | os.PathLike | Mapping | SearchSpace | BaselineSpace | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    monitor: str | None = None,
    direction: str | None = None,
    max_epochs: int | None = None,
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
    storage_outage_s: float = DEFAULT_STORAGE_OUTAGE_S,
    budget: int | None = None,
    confirm: bool = True,
    start_from: Any = None,
) -> optuna.Study:
    """Tune Stacey (or a baseline optimizer) on ``task`` and return the ``optuna.Study``.

    On Ctrl-C the running trial is failed and re-queued, ``best.yaml`` and the table are written from
    the finished trials, and KeyboardInterrupt is raised again; calling ``tune`` again resumes.

    Args:
        task: a built-in task name ("digits", "textlm", "cifar10"), "package.module:callable", the path
            of a LightningCLI config file (.yaml: ``tasks.lightning_config``), or a callable
            ``make(trial=None, seed=0, **options) -> (LightningModule, LightningDataModule)``; a module
            without ``StaceyMixin`` is given it at run time (``lightning.adopt``).
        space: for Stacey, a search-space preset name, the path of a YAML file, or a mapping (default:
            the task's preset); for a baseline, a YAML file or mapping of its options' distributions
            (default: its entry in the ``baselines`` preset). Validated before any trial runs.
        n_trials: how many COMPLETE or PRUNED trials the study should have; failed trials do not count.
            A re-run resumes up to it. Default 20, or no limit but ``budget`` when that is given.
        timeout: seconds after which no new trial starts (running trials finish). Default None.
        storage: a database URL (sqlite:///..., postgresql://user:password@host/db), "journal:PATH",
            or an optuna storage; default ``sqlite:///<output_dir>/optuna.db``.
        study_name: default: the task's name (with the baseline's name appended for a baseline).
        monitor, direction: the logged metric and "maximize"/"minimize"; default: the task's.
        max_epochs: epochs per trial, the pruner's full budget. Default: the task's own (a LightningCLI
            config's ``trainer.max_epochs``), else 10.
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
        start_from: a Stacey config (a YAML path such as ``stacey-find``'s best.yaml, a mapping or a
            StaceyConfig) the study trains first, before the anchors, once, when it is created.
        budget: the epochs all trials may train together (pruned trials count what they trained,
            failed ones too); the study stops when another run of ``max_epochs`` no longer fits.
            Default None (``n_trials`` alone limits the study).
        confirm: before naming the best, train the top candidates again on other seeds (out of the
            study's own trials and budget, none below 6 runs: ``tuner.confirm.plan``) and name the one
            with the best mean. Default True.
        storage_outage_s: how long storage calls retry while the database is unreachable before the
            study stops (the same call resumes it). Default 300.

    Raises:
        ValueError: a bad argument, space, task option or storage, before any trial runs.
        TooManyFailures: ``max_consecutive_failures`` trials in a row failed.
        NoTrialSucceeded: every trial of the study failed.
    """
    spec = study_spec(
        task,
        optimizer=optimizer,
        space=space,
        n_trials=n_trials,
        max_epochs=max_epochs,
        budget=budget,
        storage=storage,
        study_name=study_name,
        monitor=monitor,
        direction=direction,
        output_dir=output_dir,
        timeout=timeout,
        sampler=sampler,
        pruner=pruner,
        trainer_kwargs=trainer_kwargs,
        seed=seed,
        task_options=task_options,
        workers=workers,
        max_consecutive_failures=max_consecutive_failures,
        geometry=geometry,
        anchors=anchors,
        start_from=start_from,
        confirm=confirm,
        storage_outage_s=storage_outage_s,
    )
    return run_study(spec)


def run_study(spec: StudySpec) -> optuna.Study:
    """Run the study ``spec`` describes (see ``tune``) and return it."""
    call = ddp.next_call()
    with outputs.quiet_libraries():
        # Every rank, before opening the storage: under torchrun a follower can start before rank 0 and
        # cannot open the default sqlite:///<output>/optuna.db in a folder that does not exist yet.
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        if ddp.is_follower_rank():
            make = resolve_task(spec.task).make
            return ddp.follow_rank_zero(
                open_storage(spec.storage, spec.storage_outage_s),
                spec.study_name,
                call,
                lambda frozen: train_as_follower(spec, make, frozen),
            )
        outputs.check_folder_owner(spec.output_dir, spec.study_name)
        study = open_study(spec)
        _enqueue_first_points(study, spec)
        print(
            f"[stacey-tune] study {spec.study_name!r} ({spec.optimizer}) in {describe(spec.storage)}: "
            f"{outputs.spent_text(study.get_trials(deepcopy=False), spec)}, "
            f"monitor {spec.monitor} ({spec.direction})",
            flush=True,
        )
        if spec.workers == 1:
            interrupted = Worker(spec, call).run()
        else:
            interrupted = run_worker_processes(spec, call, study)
        if interrupted:
            print("[stacey-tune] interrupted: every finished trial is kept; run the same command to resume", flush=True)
        best_checkpoint.settle(study, spec)  # what a worker killed or interrupted after its trial's tell left
        outputs.write_best(study, spec.output_dir, spec.monitor)
        _write_best_cli(study, spec)
        print(outputs.summary_table(study, spec.monitor), flush=True)
    if interrupted:
        raise KeyboardInterrupt  # after the outputs are written: the caller (stacey-tune: status 130) stops too
    _check_some_trial_succeeded(study)
    return study


def _enqueue_first_points(study: optuna.Study, spec: StudySpec) -> None:
    """A new study's start point and anchors, in that order. A start point given to a study that exists joins
    it ahead of the anchors still to come, and says so: it trains at the search's next place, if one is left."""
    start = [config_anchor(spec.start_from, "start_from")] if spec.start_from is not None else []
    if start and study.get_trials(deepcopy=False):
        _add_start_point(study, config_anchor(spec.start_from, "start_from", study_gradient_scale(study)), spec)
    if spec.anchors or start:
        # No more anchors than the search has places: confirmation runs repeat its best (confirm.py).
        anchors = start + (anchors_for(spec.optimizer, spec.space) if spec.anchors else [])
        enqueue_anchors(study, anchors, spec.space, search_spec(spec).planned_trials)


def _add_start_point(study: optuna.Study, start: Anchor, spec: StudySpec) -> None:
    held_by = add_start_point(study, start, spec.space)
    if held_by is not None:
        print(f"[stacey-tune] start_from: study {spec.study_name!r} already has this config (trial {held_by})")
        return
    search, trials = search_spec(spec), study.get_trials(deepcopy=False)
    searched, number = search_trials(trials), trials[-1].number
    full = is_surplus(searched, number, search.n_trials)
    full = full or over_budget(searched, number, search.budget, spec.max_epochs)
    where = "but its search is full: raise --n-trials or --budget to train it" if full else "to train next"
    print(f"[stacey-tune] start_from: its config joins study {spec.study_name!r}, {where}", flush=True)


def _write_best_cli(study: optuna.Study, spec: StudySpec) -> None:
    """A LightningCLI config's study: ``best_cli.yaml``, the best trial as the second config of its fit."""
    config = resolve_task(spec.task).lightning_config
    if (
        config is None
        or spec.optimizer != STACEY
        or not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    ):
        return
    best = winner(study).trial
    config.write_best_cli(
        spec.output_dir,
        stacey_config=trial_options(best),
        params=best.params,
        value=best.value,
        number=best.number,
        seed=spec.seed,
        max_epochs=spec.max_epochs,
        monitor=spec.monitor,
    )


def _check_some_trial_succeeded(study: optuna.Study) -> None:
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed and not finished(trials):
        reason = failed[-1].user_attrs.get(FAIL_REASON, "no reason recorded")
        raise NoTrialSucceeded(f"all {len(failed)} trials failed; the last one (trial {failed[-1].number}): {reason}")
