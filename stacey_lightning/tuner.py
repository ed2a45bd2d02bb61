"""``tune``: an Optuna study over Stacey's p, lr, alpha and tau (and the rest of a search space), one
Lightning training run per trial, resumable, parallel, and safe against dead workers.

Storage: an SQLite file in ``output_dir`` by default; any SQLAlchemy URL (PostgreSQL for several
machines); ``journal:PATH`` for Optuna's JournalStorage file backend; or an optuna storage object.
``n_trials`` is the study's total: running the same call again resumes until that many trials have
finished (COMPLETE, PRUNED, or FAIL; trials failed because their worker died or was interrupted are
re-queued with the same parameters and do not count).

Dead workers: every trial records the ``hostname`` and ``pid`` of its worker as user attributes. A
worker starting or asking for a trial fails, at once, the RUNNING trials of dead processes on its own
host; trials of other hosts are failed by Optuna's heartbeat (RDB storages only) after
``HEARTBEAT_GRACE_S``. Either way the parameters are enqueued again.

Plain DDP (Lightning's subprocess launcher, torchrun) re-runs the user's script on every rank, so
every rank calls ``tune``: global rank 0 owns the study and marks each trial it trains with the user
attributes ``ddp_key`` and ``ddp_run``; the other ranks find that trial in the storage, build the
same module with its parameters (``optuna.trial.FixedTrial``) and join the same training run, and
leave when rank 0 records that it has finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import logging
import math
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
import yaml
from optuna.trial import TrialState

from stacey_lightning.pruning import STOP_REASON, StaceyPruning
from stacey_lightning.search_space import SearchSpace
from stacey_lightning.tasks import resolve_task

__all__ = ["tune", "mask_password", "summary_table", "TooManyFailures", "HEARTBEAT_INTERVAL_S", "HEARTBEAT_GRACE_S"]

HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
CONFIG_ATTR = "stacey_config"  # trial user attribute: the sampled Stacey config, StaceyConfig.to_dict()
_DDP_POLL_S = 0.2
_calls_in_process = 0  # every rank of a plain-DDP job calls tune() equally often: part of the DDP key


class TooManyFailures(RuntimeError):
    """Raised when a worker saw ``max_consecutive_failures`` failing trials in a row."""


def mask_password(url: str) -> str:
    """``url`` with its password replaced by ***, safe to print or log."""
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    if ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}"


@dataclass
class _Settings:
    """Everything a worker process needs, picklable."""

    task: Any
    space: SearchSpace
    n_trials: int
    timeout: float | None
    storage: Any  # a URL string or an optuna storage object
    study_name: str
    monitor: str
    direction: str
    max_epochs: int
    sampler: Any
    pruner: Any
    trainer_kwargs: dict
    output_dir: Path
    seed: int
    task_options: dict
    max_consecutive_failures: int
    worker_index: int = 0
    started: float = field(default_factory=time.monotonic)


def tune(
    task: str | Callable,
    space: str | os.PathLike | Mapping | SearchSpace | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    study_name: str | None = None,
    monitor: str | None = None,
    direction: str | None = None,
    max_epochs: int = 10,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    workers: int = 1,
    output_dir: str | os.PathLike = "stacey_runs",
    seed: int = 0,
    task_options: Mapping[str, Any] | None = None,
    max_consecutive_failures: int = 5,
) -> optuna.Study:
    """Tune Stacey on ``task`` and return the ``optuna.Study``.

    On Ctrl-C the running trial is failed and re-queued, ``best.yaml`` and the table are written from
    the finished trials, and KeyboardInterrupt is raised again; calling ``tune`` again resumes.

    Args:
        task: a built-in task name ("digits", "textlm", "cifar10"), "package.module:callable", or a
            callable ``make(trial=None, **options) -> (LightningModule, LightningDataModule)`` whose
            module uses ``StaceyMixin``.
        space: a search-space preset name, the path of a YAML file, or a mapping; default: the task's
            preset ("default" for tasks that are not built in). Validated before any trial runs.
        n_trials: the study's total number of finished trials; a re-run resumes up to it. Default 20.
        timeout: seconds after which no new trial starts (running trials finish). Default None.
        storage: a database URL (sqlite:///..., postgresql://user:password@host/db), "journal:PATH",
            or an optuna storage; default ``sqlite:///<output_dir>/optuna.db``.
        study_name: default: the task's name.
        monitor, direction: the logged metric and "maximize"/"minimize"; default: the task's.
        max_epochs: epochs per trial, the pruner's full budget. Default 10.
        sampler: default ``TPESampler(multivariate=True, seed=...)``, seeded from ``seed``, the
            worker's index and the number of trials already in the study.
        pruner: default ``HyperbandPruner(max_resource=max_epochs)``.
        trainer_kwargs: extra ``lightning.Trainer`` arguments (accelerator, devices, strategy, ...);
            ``callbacks`` are added to the tuner's own.
        workers: worker processes on this machine sharing the storage. Default 1 (this process).
        output_dir: where the SQLite file, ``best.yaml`` and ``tensorboard/<study>/trial-<n>`` go.
        seed: seeds the default sampler and ``lightning.seed_everything`` per trial. Default 0.
        task_options: keyword arguments for the task's ``make``.
        max_consecutive_failures: a worker stops with ``TooManyFailures`` after this many trials in a
            row raised. Default 5.
    """
    global _calls_in_process
    _calls_in_process += 1
    resolved = resolve_task(task)
    if workers < 1:
        raise ValueError(f"workers: must be >= 1, got {workers}")
    if n_trials < 1:
        raise ValueError(f"n_trials: must be >= 1, got {n_trials}")
    direction = direction or resolved.direction
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction: must be 'maximize' or 'minimize', got {direction!r}")
    output_dir = Path(output_dir)
    settings = _Settings(
        task=task, space=SearchSpace.load(space if space is not None else resolved.space), n_trials=n_trials,
        timeout=timeout, storage=storage if storage is not None else f"sqlite:///{output_dir.resolve()}/optuna.db",
        study_name=study_name or resolved.name, monitor=monitor or resolved.monitor, direction=direction,
        max_epochs=max_epochs, sampler=sampler, pruner=pruner, trainer_kwargs=dict(trainer_kwargs or {}),
        output_dir=output_dir, seed=seed, task_options=dict(task_options or {}),
        max_consecutive_failures=max_consecutive_failures)
    with _quiet_libraries():
        if _is_follower_rank():
            return _follow_rank_zero(settings)
        output_dir.mkdir(parents=True, exist_ok=True)
        study = _open_study(settings, worker_index=0)
        print(f"[stacey-tune] study {settings.study_name!r} in {_describe(settings.storage)}: "
              f"{_count_finished(study.get_trials(deepcopy=False))} of {n_trials} trials finished, "
              f"monitor {settings.monitor} ({direction})", flush=True)
        interrupted = False
        if workers == 1:
            interrupted = _Worker(settings).run()
        else:
            interrupted = _run_worker_processes(settings, workers)
        study = _open_study(settings, worker_index=0)
        if interrupted:
            print("[stacey-tune] interrupted: every finished trial is kept; run the same command to resume",
                  flush=True)
        _write_best(study, settings)
        print(summary_table(study, settings.monitor), flush=True)
    if interrupted:
        raise KeyboardInterrupt  # after the outputs are written: the caller (stacey-tune: status 130) stops too
    return study


# ---------------------------------------------------------------------------------------------------
# Storage and study


def _describe(storage: Any) -> str:
    return mask_password(storage) if isinstance(storage, str) else type(storage).__name__


def _open_storage(storage: Any) -> optuna.storages.BaseStorage:
    if not isinstance(storage, str):
        return storage
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = storage[len("journal:"):].removeprefix("//")
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    if "://" not in storage:
        raise ValueError(f"storage: {mask_password(storage)!r} is not a database URL (sqlite:///file.db, "
                         "postgresql://user:password@host/db) nor journal:PATH")
    storage = _with_installed_postgres_driver(storage)
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(
            storage, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=HEARTBEAT_GRACE_S, heartbeat_stale_trial_callback=_requeue)
    except Exception as error:
        # Driver messages can quote the URL: never let its password reach the terminal or a log.
        message = str(error).replace(storage, mask_password(storage))
        raise RuntimeError(f"cannot open storage {mask_password(storage)}: {message}") from None


def _with_installed_postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg (3); use psycopg2 (our `postgres` extra) when only it is installed."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _open_study(settings: _Settings, worker_index: int) -> optuna.Study:
    storage = _open_storage(settings.storage)
    sampler = settings.sampler
    if sampler is None:
        existing = next((s for s in optuna.get_all_study_summaries(storage) if s.study_name == settings.study_name),
                        None)
        # A fresh seed per worker and per resume, else resumed or parallel runs repeat the same draws.
        offset = existing.n_trials if existing is not None else 0
        sampler = optuna.samplers.TPESampler(multivariate=True, seed=settings.seed + 7919 * worker_index + offset)
    pruner = settings.pruner or optuna.pruners.HyperbandPruner(min_resource=1, max_resource=settings.max_epochs)
    study = optuna.create_study(storage=storage, study_name=settings.study_name, direction=settings.direction,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    if study.direction.name.lower() != settings.direction:
        raise ValueError(f"direction: study {settings.study_name!r} already exists with direction "
                         f"{study.direction.name.lower()}, not {settings.direction}; use another study_name")
    return study


def _requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue a failed trial's parameters again; the original stays FAIL and no longer counts."""
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)


def _retried_numbers(trials: list) -> set[int]:
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


def _count_finished(trials: list, include_running: bool = False) -> int:
    """Trials that count towards n_trials: COMPLETE, PRUNED, FAIL (unless re-queued), and RUNNING if asked."""
    retried = _retried_numbers(trials)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) + ((TrialState.RUNNING,) if include_running else ())
    return sum(1 for t in trials if t.state in states and not (t.state == TrialState.FAIL and t.number in retried))


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_dead_trials(study: optuna.Study) -> None:
    """Fail and re-queue RUNNING trials whose worker on this host is gone, and heartbeat-stale ones."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("hostname") != host or pid is None or _process_alive(pid):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason",
                                           f"worker process {pid} on {host} died while the trial was running")
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        _requeue(study, trial)
        print(f"[stacey-tune] trial {trial.number}: its worker (pid {pid}) died; failed and re-queued", flush=True)
    optuna.storages.fail_stale_trials(study)  # other hosts' trials, by heartbeat (RDB storages only)


@contextlib.contextmanager
def _study_lock(settings: _Settings):
    """Serialise counting and asking among this host's workers, so no more than n_trials start."""
    path = settings.output_dir / f".{settings.study_name}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Heartbeat:
    """Records the trial's heartbeat in an RDB storage from a thread while the trial runs."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread = None
        if hasattr(storage, "record_heartbeat") and storage.get_heartbeat_interval():
            self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)

    def _beat(self, storage: Any, trial_id: int) -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if self._stop.wait(storage.get_heartbeat_interval()):
                return

    def __enter__(self) -> _Heartbeat:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------------------------------------------
# Workers


def _run_worker_processes(settings: _Settings, workers: int) -> bool:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_process, args=(replace(settings, worker_index=index),),
                                 name=f"stacey-tune-worker-{index}") for index in range(workers)]
    for process in processes:
        process.start()
    interrupted = False
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        interrupted = True
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process in processes:
            process.join()
    failed = [p for p in processes if p.exitcode not in (0, None)]
    if failed and not interrupted:
        raise TooManyFailures(f"{len(failed)} of {workers} workers stopped with an error "
                              f"(exit codes {[p.exitcode for p in failed]}); see their messages above")
    return interrupted


def _worker_process(settings: _Settings) -> None:
    # One GPU (or one group of `devices` GPUs) per worker, when there are GPUs to share.
    devices = settings.trainer_kwargs.get("devices", 1)
    if "CUDA_VISIBLE_DEVICES" not in os.environ and isinstance(devices, int) and devices > 0:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count >= devices * (settings.worker_index + 1):
            first = devices * settings.worker_index
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(first, first + devices))
    with _quiet_libraries():
        _Worker(settings).run()


class _Worker:
    """Runs trials until the study has n_trials finished, the timeout passes, or Ctrl-C."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.make = resolve_task(settings.task).make
        self.study = _open_study(settings, settings.worker_index)
        self.ddp_key = f"{_ddp_group()}/{_calls_in_process}"
        self.ddp_runs = 0
        self.uses_script_ranks = False

    def run(self) -> bool:
        """Returns True if interrupted by Ctrl-C."""
        settings = self.settings
        failures = 0
        try:
            while settings.timeout is None or time.monotonic() - settings.started < settings.timeout:
                with _study_lock(settings):
                    _fail_dead_trials(self.study)
                    if _count_finished(self.study.get_trials(deepcopy=False), include_running=True) >= settings.n_trials:
                        break
                    trial = self.study.ask()
                    trial.set_user_attr("hostname", socket.gethostname())
                    trial.set_user_attr("pid", os.getpid())
                state, error = self._run_trial(trial)
                self._print_progress(trial.number, state)
                failures = failures + 1 if error is not None else 0
                if failures >= settings.max_consecutive_failures:
                    raise TooManyFailures(
                        f"stopping: {failures} trials in a row failed; the last one (trial {trial.number}) raised "
                        f"{error}. Its full traceback is the trial's user attribute 'traceback'.")
        except KeyboardInterrupt:
            return True
        finally:
            if self.uses_script_ranks:
                self.study.set_user_attr(_ddp_done_attr(self.ddp_key), self.ddp_runs)
        return False

    def _run_trial(self, trial: optuna.Trial) -> tuple[TrialState, str | None]:
        """Train one trial and tell the study its outcome; returns (state, error message or None)."""
        from stacey_lightning.config import StaceyConfig

        logger = None
        try:
            with _Heartbeat(self.study._storage, trial._trial_id):
                config = StaceyConfig.from_source(self.settings.space.suggest(trial)).to_dict()
                trial.set_user_attr(CONFIG_ATTR, config)
                module, datamodule = _build(self.make, trial, self.settings.task_options, config)
                trainer, pruning, logger = _trainer(self.settings, trial.number, trial)
                if trainer.world_size > 1 and not _spawns_processes(trainer):
                    self.uses_script_ranks = True
                    trial.set_user_attr("ddp_key", self.ddp_key)
                    trial.set_user_attr("ddp_run", self.ddp_runs)
                    self.ddp_runs += 1
                _fit(trainer, module, datamodule, self.settings.seed)
                value = trainer.callback_metrics.get(self.settings.monitor)
                value = None if value is None else float(value)
                # From the storage: under ddp_spawn rank 0 ran in another process, and Trial.user_attrs
                # is this process's cached copy.
                reason = self.study._storage.get_trial_user_attrs(trial._trial_id).get(STOP_REASON)
        except KeyboardInterrupt:
            self._fail(trial, "fail_reason", "interrupted (Ctrl-C)")
            _requeue(self.study, trial)
            raise
        except Exception as error:
            self._fail(trial, "traceback", traceback.format_exc())
            _log_trial_hparams(logger, trial, "FAIL", None, self.settings.monitor)
            return TrialState.FAIL, f"{type(error).__name__}: {error}"
        if reason is not None:
            _log_trial_hparams(logger, trial, "PRUNED", value, self.settings.monitor)
            self.study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED, None
        if value is None or not math.isfinite(value):
            missing = f"monitor {self.settings.monitor!r} was never logged" if value is None else f"final value {value}"
            self._fail(trial, "fail_reason", missing)
            _log_trial_hparams(logger, trial, "FAIL", None, self.settings.monitor)
            return TrialState.FAIL, missing
        _log_trial_hparams(logger, trial, "COMPLETE", value, self.settings.monitor)
        self.study.tell(trial, value)
        return TrialState.COMPLETE, None

    def _fail(self, trial: optuna.Trial, key: str, message: str) -> None:
        trial.set_user_attr(key, message)
        self.study.tell(trial, state=TrialState.FAIL)

    def _print_progress(self, number: int, state: TrialState) -> None:
        trials = self.study.get_trials(deepcopy=False)
        finished = _count_finished(trials)
        line = f"[stacey-tune] trial {finished} of {self.settings.n_trials} (#{number} {state.name}"
        frozen = trials[number]
        if frozen.value is not None:
            line += f", {self.settings.monitor} = {frozen.value:.4g}"
        line += ")"
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if complete:
            best = self.study.best_trial
            line += f", best so far {best.value:.4g} (#{best.number}, p = {_p_text(best)})"
        print(line, flush=True)


def _spawns_processes(trainer: Any) -> bool:
    """True for ddp_spawn-like launchers, which run every rank inside trainer.fit of this process."""
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def _build(make: Callable, trial: Any, options: Mapping[str, Any], config: Mapping[str, Any]) -> tuple:
    """Call the task's ``make`` (with the trial if it takes one) and hand the module its config."""
    parameters = inspect.signature(make).parameters
    takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if not parameters and options:
        raise TypeError(f"task_options {sorted(options)} given, but the task's make() takes no arguments")
    kwargs = dict(options)
    if "trial" in parameters or takes_kwargs:
        kwargs["trial"] = trial
    built = make(**kwargs)
    if not (isinstance(built, tuple) and len(built) == 2):
        raise TypeError("the task's make() must return (LightningModule, LightningDataModule), got "
                        f"{type(built).__name__}")
    module, datamodule = built
    if not hasattr(module, "set_stacey_config"):
        raise TypeError(f"the task's module {type(module).__name__} has no set_stacey_config: "
                        "make it inherit stacey_lightning.StaceyMixin")
    module.set_stacey_config(config)
    # The tuner logs the trial's own hyperparameters at the end; Lightning's start-of-fit copy would
    # be a second, metric-less HParams record in the same run.
    for part in (module, datamodule):
        if part is not None and hasattr(part, "_log_hyperparams"):
            part._log_hyperparams = False
    return module, datamodule


def _trainer(settings: _Settings, number: int, trial: Any) -> tuple:
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    kwargs = dict(settings.trainer_kwargs)
    pruning = StaceyPruning(trial, settings.monitor)
    logger = TensorBoardLogger(str(settings.output_dir / "tensorboard"), name=settings.study_name,
                               version=f"trial-{number}", default_hp_metric=False)
    # log_every_n_steps=10: small tasks (digits: 45 steps an epoch) still get train_loss curves.
    defaults = dict(max_epochs=settings.max_epochs, logger=logger, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                    log_every_n_steps=10)
    callbacks = [pruning, *kwargs.pop("callbacks", [])]
    trainer = Trainer(**{**defaults, **kwargs}, callbacks=callbacks)
    return trainer, pruning, logger


def _fit(trainer: Any, module: Any, datamodule: Any, seed: int) -> None:
    from lightning.pytorch import seed_everything

    seed_everything(seed, workers=True, verbose=False)
    sigint_handler = signal.getsignal(signal.SIGINT)
    try:
        trainer.fit(module, datamodule=datamodule)
    except SystemExit as error:
        # Lightning answers Ctrl-C inside fit with sys.exit(1) after setting SIGINT to SIG_IGN: restore
        # the handler and raise KeyboardInterrupt again, so the trial is failed and re-queued, and the
        # study is closed (best.yaml, table) instead of the process ending with the trial RUNNING.
        if not isinstance(error.__context__, KeyboardInterrupt):
            raise
        if sigint_handler is not None:
            signal.signal(signal.SIGINT, sigint_handler)
        raise KeyboardInterrupt from None


def _log_trial_hparams(logger: Any, trial: Any, state: str, value: float | None, monitor: str) -> None:
    """HParams of one trial's TensorBoard run: sampled values, p, state, and the final metric."""
    if logger is None:
        return
    config = trial.user_attrs.get(CONFIG_ATTR, {})
    hparams: dict[str, Any] = {name: value for name, value in trial.params.items()}
    if "p" in config:
        hparams["p"] = float(config["p"])
    for kind, overrides in config.get("kinds", {}).items():
        if "p" in overrides:
            hparams[f"kinds.{kind}.p"] = float(overrides["p"])
    hparams["state"] = state
    metrics = {"pruned": float(state == "PRUNED")}
    if value is not None:
        metrics[f"hp/{monitor}"] = value
    logger.log_hyperparams(hparams, metrics)
    logger.finalize("success")


# ---------------------------------------------------------------------------------------------------
# Plain DDP: ranks other than 0 follow rank 0's trials


def _is_follower_rank() -> bool:
    """True on every rank but global rank 0 of a plain-DDP job (torchrun sets RANK; Lightning's
    launcher sets LOCAL_RANK and NODE_RANK in its children, and 0, 0 in rank 0 after the first fit)."""
    return any(int(os.environ.get(name, 0)) != 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _ddp_group() -> str:
    """A key shared by the ranks of one plain-DDP job and by no other job.

    Under torchrun every rank sees the same run id and address; under Lightning's launcher rank 0
    sets STACEY_TUNE_GROUP before its first fit and the children inherit it.
    """
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return "torchrun-" + "-".join(os.environ.get(k, "") for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT"))
    return os.environ.setdefault("STACEY_TUNE_GROUP", uuid.uuid4().hex)


def _ddp_done_attr(key: str) -> str:
    return f"stacey_ddp_done:{key}"


def _follow_rank_zero(settings: _Settings) -> optuna.Study:
    storage = _open_storage(settings.storage)
    key = f"{_ddp_group()}/{_calls_in_process}"
    parent = os.getppid()
    make = resolve_task(settings.task).make
    study = None
    run = 0
    while True:
        study = study or _wait_for_study(storage, settings.study_name, parent)
        if study.user_attrs.get(_ddp_done_attr(key)) == run:
            return study
        trial = next((t for t in study.get_trials(deepcopy=False)
                      if t.user_attrs.get("ddp_key") == key and t.user_attrs.get("ddp_run") == run), None)
        if trial is None:
            if os.getppid() != parent:
                raise RuntimeError("stacey-tune: rank 0 of this DDP job died; stopping this rank")
            time.sleep(_DDP_POLL_S)
            continue
        fixed = optuna.trial.FixedTrial(trial.params, trial.number)
        module, datamodule = _build(make, fixed, settings.task_options, trial.user_attrs[CONFIG_ATTR])
        trainer, _, _ = _trainer(settings, trial.number, None)
        _fit(trainer, module, datamodule, settings.seed)
        run += 1


def _wait_for_study(storage: Any, name: str, parent: int) -> optuna.Study:
    while True:
        try:
            return optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            if os.getppid() != parent:
                raise RuntimeError("stacey-tune: rank 0 of this DDP job died; stopping this rank") from None
            time.sleep(_DDP_POLL_S)


# ---------------------------------------------------------------------------------------------------
# Outputs


def _p_text(trial: optuna.trial.FrozenTrial) -> str:
    p = trial.user_attrs.get(CONFIG_ATTR, {}).get("p")
    return "?" if p is None else ("inf" if float(p) == math.inf else f"{float(p):.3g}")


def _write_best(study: optuna.Study, settings: _Settings) -> None:
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        print("[stacey-tune] no trial has completed yet: best.yaml not written", flush=True)
        return
    path = settings.output_dir / "best.yaml"
    path.write_text(yaml.safe_dump(study.best_trial.user_attrs[CONFIG_ATTR], sort_keys=False))
    print(f"[stacey-tune] best trial #{study.best_trial.number}: {settings.monitor} = {study.best_value:.4g}; "
          f"config written to {path}", flush=True)


def summary_table(study: optuna.Study, monitor: str, top: int = 5) -> str:
    """A Markdown table of the ``top`` best completed trials (p, lr, alpha, tau, metric) and the state counts."""
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value,
                      reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    rows = [f"| trial | p | lr | alpha | tau | {monitor} |", "|---|---|---|---|---|---|"]
    for trial in complete[:top]:
        config = trial.user_attrs.get(CONFIG_ATTR, {})
        rows.append(f"| {trial.number} | {_p_text(trial)} | " + " | ".join(
            f"{config.get(key, float('nan')):.3g}" for key in ("lr", "alpha", "tau")) + f" | {trial.value:.4g} |")
    counts = {state.name: sum(1 for t in trials if t.state == state) for state in TrialState}
    rows.append("trials: " + ", ".join(f"{count} {name}" for name, count in counts.items() if count))
    return "\n".join(rows)


@contextlib.contextmanager
def _quiet_libraries():
    """One progress line per trial instead of Lightning's and Optuna's per-fit and per-trial chatter."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    verbosity = optuna.logging.get_verbosity()
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Heartbeats and fail_stale_trials are used on purpose, with ask/tell instead of optimize.
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            warnings.filterwarnings("ignore", message=".*fail_stale_trials is experimental")
            # Printed by Lightning on every fit; about Lightning's own use of torch, nothing a user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        optuna.logging.set_verbosity(verbosity)
