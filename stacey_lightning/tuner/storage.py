"""Where a study lives, and which of its trials count.

Storage: an SQLite file by default; any SQLAlchemy URL (PostgreSQL for several machines);
``journal:PATH`` for Optuna's JournalStorage file backend; or an optuna storage object.

Counting: ``n_trials`` is the number of COMPLETE and PRUNED trials the study should end with. FAIL
trials never count (a failure is not a result). Workers decide what to start from the storage alone,
so the count is exact across processes and machines: Optuna numbers trials densely, creating one
at a time (RDB storages lock the study row; the journal is one ordered log), so once a worker holds
trial k it sees every trial numbered below k. A trial is *surplus* when n_trials trials that are
finished, running or waiting come before it; its worker fails it before training (``SURPLUS``).

Dead workers: every trial records its worker's ``HOSTNAME`` and ``PID``. A worker fails, at once,
the RUNNING trials of dead processes on its own host (and the parent of ``--workers N`` processes fails
those of a child that died, knowing how: workers.py); trials of other hosts are failed by Optuna's
heartbeat (RDB storages only) after ``HEARTBEAT_GRACE_S``. Either way the parameters are enqueued
again (``RETRY_OF``), with how the worker died (``WORKER_DEATHS``), at most ``MAX_TRIES`` tries in all:
a configuration that takes its process down (the kernel's OOM killer, a crash in an extension) is then
failed for good with the reason ("killed by signal 9 twice: out of memory?"), and, like any failed trial,
does not count, so the study fills its places with other configurations.

Outages: every storage opened here from a URL or ``journal:PATH`` retries its calls through an outage of up
to ``storage_outage_s`` seconds (``outage.RetryingStorage``). Opening one does not: a storage that cannot
be reached when a study starts is more often a wrong URL than an outage, and is said at once.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import socket
import threading
import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from stacey_lightning.tuner.attributes import (
    CONFIRMS,
    DEFAULT_STORAGE_OUTAGE_S,
    FAIL_REASON,
    HOSTNAME,
    PID,
    RETRY_OF,
    STUDY_OPTIMIZER,
    SURPLUS,
    TRIAL_SEED,
    WORKER_DEATHS,
)
from stacey_lightning.tuner.outage import RetryingStorage, StorageUnavailable, claimants
from stacey_lightning.tuner.samplers import make_pruner, make_sampler
from stacey_lightning.tuner.spec import StudySpec

__all__ = [
    "StorageError",
    "StorageUnavailable",
    "mask_password",
    "describe",
    "open_storage",
    "open_study",
    "dashboard_hint",
    "journal_path",
    "Heartbeat",
    "requeue",
    "fail_dead_trials",
    "death_text",
    "finished",
    "study_is_full",
    "is_surplus",
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_GRACE_S",
    "MAX_TRIES",
]

HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
# How often a configuration is tried when its worker process dies while training it (WORKER_DEATHS).
MAX_TRIES = 2
# What most often ends a process by these signals, for the reason a dead worker's trial is failed with.
_SIGNAL_HINTS = {
    "SIGKILL": "out of memory?",  # the kernel's OOM killer (or a scheduler's memory limit)
    "SIGSEGV": "a crash in compiled code?",
    "SIGBUS": "a crash in compiled code?",
    "SIGABRT": "a crash in compiled code?",
}
_UNKNOWN_DEATH_HINT = "out of memory, or a crash in compiled code?"
_CREATE_ATTEMPTS = 5
_CREATION_RACE = ("already exists", "duplicate key", "UniqueViolation", "UNIQUE constraint failed")
_JOURNAL = "journal:"
# What each database needs installed, by SQLAlchemy dialect.
_DRIVERS = {"postgresql": "pip install 'stacey-lightning[postgres]' (psycopg2)", "mysql": "pip install mysqlclient"}
# libpq's defaults wait for the operating system: minutes for a connection to a host that does not answer,
# two hours before a connection whose server vanished is found dead. A worker must notice an outage (and
# say so) in seconds; a user's own values in the URL's query win.
_POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


class StorageError(ValueError):
    """A storage that cannot be opened; the message is one line naming it (password masked) and the fix."""


def mask_password(url: str) -> str:
    """``url`` with its password replaced by ***, safe to print or log; a string that is not a database URL
    (``journal:PATH``) as it is."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    if parsed.password is None:
        return url
    if parsed.host and "@" in parsed.host:
        # An unencoded @ in the password: SQLAlchemy splits at the first @, and the rest of the password
        # would show as part of the host.
        parsed = parsed.set(host=parsed.host.rpartition("@")[2])
    return parsed.render_as_string(hide_password=True)


def describe(storage: Any) -> str:
    """The storage as it may be printed: its URL with the password masked, or its class name."""
    return mask_password(storage) if isinstance(storage, str) else type(storage).__name__


def journal_path(storage: str) -> str | None:
    """The file of a ``journal:PATH`` storage, else None."""
    return storage[len(_JOURNAL) :].removeprefix("//") if storage.startswith(_JOURNAL) else None


def dashboard_hint(storage: str) -> str:
    """The optuna-dashboard command that opens ``storage`` (it takes a journal file as a bare path)."""
    path = journal_path(storage)
    return f"optuna-dashboard {path if path is not None else mask_password(storage)}"


def open_storage(storage: Any, outage_s: float = DEFAULT_STORAGE_OUTAGE_S) -> optuna.storages.BaseStorage:
    """An optuna storage for a URL or ``journal:PATH``, retrying its calls through an outage of up to
    ``outage_s`` seconds (``outage.RetryingStorage``); a storage object is returned as it is.

    Raises:
        StorageError: one line naming the storage, what went wrong, and what to do.
    """
    if not isinstance(storage, str):
        return storage
    shown = mask_password(storage)
    path = journal_path(storage)
    if path is not None:
        from optuna.storages.journal import JournalFileBackend

        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise StorageError(f"storage {shown}: the folder of {path!r} does not exist; create it or fix the path")
        return RetryingStorage(optuna.storages.JournalStorage(JournalFileBackend(path)), shown, outage_s)
    try:
        url = _with_installed_postgres_driver(make_url(storage))
    except ArgumentError:
        raise StorageError(
            f"storage {shown!r} is not a database URL (sqlite:///file.db, "
            "postgresql://user:password@host/db) nor journal:PATH"
        ) from None
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            rdb = optuna.storages.RDBStorage(
                # RDBStorage takes a string; the password must stay in it, escaped as SQLAlchemy reads it.
                url.render_as_string(hide_password=False),
                engine_kwargs=_engine_kwargs(url),
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=HEARTBEAT_GRACE_S,
                heartbeat_stale_trial_callback=_requeue_stale,
            )
            # get_storage adds Optuna's trial cache, as create_study does for an RDBStorage (not for ours).
            return RetryingStorage(
                optuna.storages.get_storage(rdb), shown, outage_s, heartbeat_grace_s=HEARTBEAT_GRACE_S,
                take_lock=_take_lock(url),
            )  # fmt: skip
        except Exception as error:  # any driver, URL or connection error becomes one line
            cause = _cause(error, storage, shown)
            # Workers on several machines starting on a fresh database race to create Optuna's tables,
            # and the losers fail on the winner's half-made schema; opening again finds it complete.
            if attempt + 1 < _CREATE_ATTEMPTS and any(words in cause for words in _CREATION_RACE):
                time.sleep(random.uniform(0.5, 2.0))
                continue
            raise StorageError(f"cannot open storage {shown}: {cause}") from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def _take_lock(url: URL) -> str | None:
    """For a SQLite file, the lock file beside it that serialises taking enqueued trials (outage.py)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return f"{os.path.abspath(url.database)}.take-lock"


def _engine_kwargs(url: URL) -> dict[str, Any]:
    """SQLite waits up to 60 s for another worker's lock; a server's connections are tested before each
    use (one that died with its server is replaced) and time out in seconds (``_POSTGRES_CONNECT_ARGS``)."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": 60}}
    if backend == "postgresql":
        connect_args = {key: value for key, value in _POSTGRES_CONNECT_ARGS.items() if key not in url.query}
        return {"pool_pre_ping": True, "connect_args": connect_args}
    return {"pool_pre_ping": True}


def _cause(error: Exception, url: str, shown: str) -> str:
    """The first line of the deepest error, without the password, and a hint for a missing driver."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    lines = [line.strip() for line in str(error).replace(url, shown).splitlines() if line.strip()]
    message = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    dialect = make_url(url).get_backend_name()
    if isinstance(error, (ImportError, ModuleNotFoundError)) or "Can't load plugin" in message:
        install = _DRIVERS.get(dialect, "install its SQLAlchemy driver")
        return f"{message} (no driver for {dialect}: {install}; or use sqlite:///file.db or journal:PATH)"
    if dialect == "postgresql":
        return f"{message} (check the host, port, user, password and database, and that the server is running)"
    return message


def _with_installed_postgres_driver(url: URL) -> URL:
    """SQLAlchemy 2.1 maps postgresql:// to psycopg (3); use psycopg2 (our `postgres` extra) when only it is
    installed."""
    if url.drivername != "postgresql":
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return url.set(drivername="postgresql+psycopg2")
    return url


def open_study(spec: StudySpec) -> optuna.Study:
    """Create the study or load it, with the sampler of worker ``spec.worker_index`` and the study's pruner.

    Raises:
        ValueError: the study exists with another direction, or tunes another optimizer.
    """
    storage = open_storage(spec.storage, spec.storage_outage_s)
    existing = next((s for s in optuna.get_all_study_summaries(storage) if s.study_name == spec.study_name), None)
    # A fresh seed per worker and per resume, else resumed or parallel runs repeat the same draws.
    offset = existing.n_trials if existing is not None else 0
    sampler = make_sampler(spec.sampler, spec.seed + 7919 * spec.worker_index + offset, spec.planned_trials)
    pruner = make_pruner(spec.pruner, spec.max_epochs, spec.planned_trials)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study_name,
        direction=spec.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != spec.direction:
        raise ValueError(
            f"direction: study {spec.study_name!r} already exists with direction "
            f"{study.direction.name.lower()}, not {spec.direction}; use another study name"
        )
    tuned = study.user_attrs.get(STUDY_OPTIMIZER)
    if tuned is None:
        study.set_user_attr(STUDY_OPTIMIZER, spec.optimizer)
    elif tuned != spec.optimizer:
        raise ValueError(
            f"study {spec.study_name!r} already tunes {tuned}, not {spec.optimizer}; use another study name"
        )
    return study


class Heartbeat:
    """Records a trial's heartbeat in an RDB storage from a thread while the trial runs."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        self._stop = threading.Event()
        self._thread = None
        if hasattr(storage, "record_heartbeat") and storage.get_heartbeat_interval():
            self._thread = threading.Thread(target=self._beat, args=(storage, trial_id), daemon=True)

    def _beat(self, storage: Any, trial_id: int) -> None:
        while True:
            try:
                storage.record_heartbeat(trial_id)
            except StorageUnavailable:
                pass  # beat again later: whether the study stops is the worker's call, on its own next call
            if self._stop.wait(storage.get_heartbeat_interval()):
                return

    def __enter__(self) -> Heartbeat:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def requeue(study: optuna.Study, trial: FrozenTrial, deaths: list[int | None] | None = None) -> None:
    """Enqueue a failed trial's parameters again (a new WAITING trial with ``RETRY_OF``); a confirmation
    run stays one (its ``CONFIRMS`` and ``TRIAL_SEED``, confirm.py), and the deaths of the worker processes
    that ran the parameters go with them (``WORKER_DEATHS``): ``deaths``, where the trial's own worker died."""
    kept = {key: trial.user_attrs[key] for key in (CONFIRMS, TRIAL_SEED, WORKER_DEATHS) if key in trial.user_attrs}
    if deaths is not None:
        kept[WORKER_DEATHS] = deaths
    study.enqueue_trial(trial.params, user_attrs={**kept, RETRY_OF: trial.number}, skip_if_exists=False)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owners(trial: FrozenTrial) -> list[tuple[str | None, int]]:
    """(host, pid) of the worker that holds ``trial``; without a recorded pid (its worker stopped before
    recording it, say in an outage past the limit), the processes that claimed it (outage.CLAIMED_BY)."""
    pid = trial.user_attrs.get(PID)
    return [(trial.user_attrs.get(HOSTNAME), pid)] if pid is not None else claimants(trial)


def fail_dead_trials(study: optuna.Study, ended: tuple[int, int] | None = None) -> None:
    """Fail the RUNNING trials whose worker on this host is gone, and heartbeat-stale ones, and re-queue
    their parameters unless they have been tried ``MAX_TRIES`` times.

    Args:
        ended: (pid, exit code) of a worker process of this host that has just ended, from its parent,
            which has not reaped it yet (workers.py): its trials are failed with how it ended.
    """
    host = socket.gethostname()
    ended_pid, exit_code = ended if ended is not None else (None, None)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owners = _owners(trial)
        # The ended process stays a zombie until its parent reaps it: alive to os.kill, gone all the same.
        pids = [pid for owner_host, pid in owners if owner_host == host]
        if owners and len(pids) == len(owners) and all(pid == ended_pid or not _process_alive(pid) for pid in pids):
            _fail_dead_trial(study, trial, exit_code if ended_pid in pids else None)
    optuna.storages.fail_stale_trials(study)  # other hosts' trials, by heartbeat (RDB storages only)


def _fail_dead_trial(study: optuna.Study, trial: FrozenTrial, exit_code: int | None) -> None:
    """Fail ``trial``, whose worker process ended with ``exit_code`` (None: not known), and re-queue it."""
    deaths = [*trial.user_attrs.get(WORKER_DEATHS, []), exit_code]
    # Every worker that starts on this host (the re-run of a command with --workers N) looks at once: the
    # one whose FAIL lands re-queues the trial; the others find it finished and leave it.
    try:
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, death_text(deaths))
        if not study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    _after_death(study, trial, deaths)


def _requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's callback for a trial it failed because its heartbeat stopped: its worker died somehow."""
    _after_death(study, trial, [*trial.user_attrs.get(WORKER_DEATHS, []), None])


def _after_death(study: optuna.Study, trial: FrozenTrial, deaths: list[int | None]) -> None:
    """Re-queue a trial failed with its worker, or, once its parameters have had ``MAX_TRIES``, say so."""
    if len(deaths) >= MAX_TRIES:
        print(f"[stacey-tune] trial {trial.number} FAIL: {death_text(deaths)}; not tried again", flush=True)
        return
    requeue(study, trial, deaths)
    host, pid = next(iter(_owners(trial)), ("?", "?"))
    print(
        f"[stacey-tune] trial {trial.number}: its worker (pid {pid} on {host}) {_verb(deaths[-1])}; failed and "
        f"re-queued (try {len(deaths) + 1} of {MAX_TRIES})",
        flush=True,
    )


def death_text(deaths: list[int | None]) -> str:
    """How the worker processes that ran one configuration died, as a trial's ``FAIL_REASON``: "killed by
    signal 9: out of memory?", "killed by signal 9 twice: out of memory?", "died, then exited with status 3".

    Args:
        deaths: exit codes, oldest first (negative: the signal), None where how is not known.
    """
    causes = [_death_cause(code) for code in deaths]
    if len(causes) > 1 and len(set(causes)) == 1:
        text = f"{causes[0]} {'twice' if len(causes) == 2 else f'{len(causes)} times'}"
    else:
        text = ", then ".join(causes)
    hint = _hint(deaths[-1])
    return f"{text}: {hint}" if hint else text


def _death_cause(exit_code: int | None) -> str:
    if exit_code is None:
        return "died"
    return f"killed by signal {-exit_code}" if exit_code < 0 else f"exited with status {exit_code}"


def _verb(exit_code: int | None) -> str:
    """The death as a sentence's verb: "was killed by signal 9: out of memory?"."""
    text = death_text([exit_code])
    return f"was {text}" if exit_code is not None and exit_code < 0 else text


def _hint(exit_code: int | None) -> str | None:
    if exit_code is None:
        return _UNKNOWN_DEATH_HINT
    try:
        return _SIGNAL_HINTS.get(signal.Signals(-exit_code).name) if exit_code < 0 else None
    except ValueError:  # a signal this platform does not name
        return None


def finished(trials: list[FrozenTrial]) -> int:
    """The trials that count towards n_trials: COMPLETE and PRUNED."""
    return sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))


def _holds_a_place(trial: FrozenTrial) -> bool:
    """Finished, running or waiting to run, and not surplus: one of the study's n_trials places."""
    return trial.state in (
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.RUNNING,
        TrialState.WAITING,
    ) and not trial.user_attrs.get(SURPLUS)


def study_is_full(trials: list[FrozenTrial], n_trials: int) -> bool:
    """True when n_trials trials are finished or running, so that no trial is left to start."""
    running = [t for t in trials if t.state == TrialState.RUNNING and not t.user_attrs.get(SURPLUS)]
    return finished(trials) + len(running) >= n_trials


def is_surplus(trials: list[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial ``number`` comes after the study's first n_trials places (by trial number)."""
    return sum(1 for t in trials if t.number < number and _holds_a_place(t)) >= n_trials
