"""``StudySpec``: one study, described once. Built and checked where the user speaks (``stacey-tune``'s
arguments, ``tune()``'s keyword arguments, ``stacey-compare``), then handed down whole: workers,
trials, outputs and the storage read what they need from it; nothing below re-lists its fields.

Every mistake a spec can hold is raised by ``study_spec`` as one ``ValueError`` naming the argument
and the fix, before a storage is opened or a trial starts: a bad budget, direction, timeout,
sampler, pruner, task option or space, and Trainer settings that Lightning itself would refuse (an
unknown strategy or accelerator, more devices than the machine has).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stacey_lightning.attributes import DEFAULT_STORAGE_OUTAGE_S
from stacey_lightning.baselines import STACEY
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.search.baseline_space import BaselineSpace
from stacey_lightning.search.samplers import check_choice
from stacey_lightning.search.space import SearchSpace
from stacey_lightning.tasks import check_model_space, check_task_options, resolve_task

__all__ = ["StudySpec", "study_spec", "for_optimizer", "check_trainer_kwargs", "DEFAULT_N_TRIALS", "PER_PROCESS"]

DEFAULT_N_TRIALS = 20
# The fields of a StudySpec that no setting gives: every other field is one of study_spec's arguments.
PER_PROCESS = frozenset({"worker_index", "started"})


@dataclass(frozen=True)
class StudySpec:
    """Everything a study's processes need, immutable and picklable (workers are spawned with it).

    ``task`` is what the user named (a built-in name, "module:callable", a LightningCLI config or a
    callable); ``space`` is loaded (a ``SearchSpace`` for Stacey, a ``BaselineSpace`` for a
    baseline); ``sampler`` and ``pruner`` are as given (names, class paths, objects, or None for the
    defaults). ``worker_index`` is the only per-process field (``dataclasses.replace`` sets it for each
    worker); ``started`` is when the spec was built, from which ``timeout`` counts.
    """

    task: Any
    optimizer: str
    space: Any
    n_trials: int
    max_epochs: int
    budget: int | None  # epochs all trials may train together (budget.py); None: n_trials alone limits
    storage: Any  # a URL string or an optuna storage object
    study_name: str
    monitor: str
    direction: str
    output_dir: Path
    timeout: float | None = None
    sampler: Any = None
    pruner: Any = None
    trainer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    task_options: Mapping[str, Any] = field(default_factory=dict)
    workers: int = 1
    max_consecutive_failures: int = 5
    geometry: bool = False
    anchors: bool = True
    start_from: Mapping[str, Any] | None = None  # a Stacey config trained first (anchors.config_anchor)
    confirm: bool = True  # train the top candidates again on other seeds before naming the best (confirm.py)
    storage_outage_s: float = DEFAULT_STORAGE_OUTAGE_S
    worker_index: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def planned_trials(self) -> int:
        """The trials the study plans for: ``n_trials``, or the full runs its budget pays for if fewer.
        Samplers, pruners and anchors are sized by it."""
        if self.budget is None:
            return self.n_trials
        return max(1, min(self.n_trials, self.budget // self.max_epochs))


def study_spec(
    task: str | Callable,
    *,
    optimizer: str = STACEY,
    space: Any = None,
    n_trials: int | None = None,
    max_epochs: int | None = None,
    budget: int | None = None,
    storage: Any = None,
    study_name: str | None = None,
    monitor: str | None = None,
    direction: str | None = None,
    output_dir: str | os.PathLike = "stacey_runs",
    timeout: float | None = None,
    sampler: Any = None,
    pruner: Any = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    task_options: Mapping[str, Any] | None = None,
    workers: int = 1,
    max_consecutive_failures: int = 5,
    geometry: bool = False,
    anchors: bool = True,
    start_from: Any = None,
    confirm: bool = True,
    storage_outage_s: float = DEFAULT_STORAGE_OUTAGE_S,
) -> StudySpec:
    """Check every setting and return the study's spec: the one place a study's settings are listed.
    ``tune(task, **settings)``, ``stacey-tune``'s flags and ``compare(..., **settings)`` all come here.

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
            study's own trials and budget, none below 6 runs: ``study.confirm.plan``) and name the one
            with the best mean. Default True.
        storage_outage_s: how long storage calls retry while the database is unreachable before the
            study stops (the same call resumes it). Default 300.


    Raises:
        ValueError: one line naming the bad argument and what to do.
    """
    resolved = resolve_task(task)
    if max_epochs is None:  # the task's own (a LightningCLI file's trainer.max_epochs), else 10
        max_epochs = resolved.max_epochs or 10
    if n_trials is None:
        # Every trial trains at least one epoch, so a budget of E epochs never holds more than E trials.
        n_trials = budget if budget is not None else DEFAULT_N_TRIALS
    _check_at_least_one(workers=workers, n_trials=n_trials, max_epochs=max_epochs)
    if budget is not None and budget < max_epochs:
        raise ValueError(f"budget: {budget} epochs do not pay for one run of max_epochs {max_epochs}; raise it")
    if max_consecutive_failures < 1:
        raise ValueError(f"max_consecutive_failures: must be >= 1, got {max_consecutive_failures}")
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout: must be a positive number of seconds, got {timeout}")
    if not (storage_outage_s >= 0 and math.isfinite(storage_outage_s)):
        raise ValueError(f"storage_outage_s: must be a number of seconds >= 0, got {storage_outage_s}")
    direction = direction or resolved.direction
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction: must be 'maximize' or 'minimize', got {direction!r}")
    check_choice(sampler, "sampler")
    check_choice(pruner, "pruner")
    task_options = dict(task_options or {})
    check_task_options(resolved, task_options)
    trainer_kwargs = {**resolved.trainer_kwargs, **(trainer_kwargs or {})}  # a LightningCLI file's under the caller's
    check_trainer_kwargs(trainer_kwargs)
    if start_from is not None:
        if optimizer != STACEY:
            raise ValueError(f"start_from: a Stacey config starts a Stacey study, not one of {optimizer}")
        start_from = StaceyConfig.from_source(start_from).to_dict()  # a bad file or key fails here
    output_dir = Path(output_dir)
    spec = StudySpec(
        task=task,
        optimizer=STACEY,
        space=None,
        n_trials=n_trials,
        max_epochs=max_epochs,
        budget=budget,
        storage=storage if storage is not None else f"sqlite:///{output_dir.resolve()}/optuna.db",
        study_name=study_name or resolved.name,
        monitor=monitor or resolved.monitor,
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
        storage_outage_s=float(storage_outage_s),
    )
    return for_optimizer(spec, optimizer, space, study_name=study_name)


def for_optimizer(spec: StudySpec, optimizer: str, space: Any = None, *, study_name: str | None = None) -> StudySpec:
    """``spec`` tuning ``optimizer`` over ``space`` (Stacey: a preset name, YAML path or mapping, default
    the task's preset; a baseline: its options' space, default its entry in the ``baselines`` preset).
    The study is named ``study_name``, by default the task's name, with the baseline's appended."""
    task = resolve_task(spec.task)
    if optimizer == STACEY:
        loaded = SearchSpace.load(space if space is not None else task.space)
        check_model_space(task, loaded.model_arguments())
    else:
        loaded = BaselineSpace.load(optimizer, space)
    name = study_name or (task.name if optimizer == STACEY else f"{task.name}-{optimizer}")
    return replace(spec, optimizer=optimizer, space=loaded, study_name=name)


def _check_at_least_one(**counts: int) -> None:
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name}: must be >= 1, got {value}")


def check_trainer_kwargs(trainer_kwargs: Mapping[str, Any]) -> None:
    """Build (and drop) the Trainer a run would get, so that what Lightning refuses (an unknown strategy,
    accelerator or Trainer argument, devices the machine does not have) fails now, in one line,
    instead of failing every trial. Building a Trainer starts no process and touches no device memory.
    """
    from stacey_lightning import run

    try:
        run.make_trainer(max_epochs=1, logger=False, callbacks=[], trainer_kwargs=trainer_kwargs)
    except Exception as error:  # Lightning raises ValueError, TypeError or MisconfigurationException
        shown = ", ".join(f"{key}={value!r}" for key, value in trainer_kwargs.items() if key != "callbacks")
        message = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"trainer settings ({shown or 'defaults'}): {message}") from None
