"""Where a study lives: opening a storage, and a running trial's heartbeat.

Storage: an SQLite file by default; any SQLAlchemy URL (PostgreSQL for several machines);
``journal:PATH`` for Optuna's JournalStorage file backend; or an optuna storage object.

Workers decide what to start from the storage alone (``study.admission``), so what they decide is exact
across processes and machines: Optuna numbers trials densely, creating one at a time (RDB storages lock
the study row; the journal is one ordered log), so once a worker holds trial k it sees every trial
numbered below k.

Heartbeats: an RDB storage records each running trial's heartbeat (``Heartbeat``); a trial whose
heartbeat stops for ``HEARTBEAT_GRACE_S`` is failed and re-queued by any worker (``deaths``).

Outages: every storage opened here from a URL or ``journal:PATH`` retries its calls through an outage of up
to ``storage_outage_s`` seconds (``outage.RetryingStorage``). Opening one does not: a storage that cannot
be reached when a study starts is more often a wrong URL than an outage, and is said at once.
"""

from __future__ import annotations

import importlib.util
import os
import random
import threading
import time
from typing import Any

import optuna
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from stacey_lightning.attributes import DEFAULT_STORAGE_OUTAGE_S
from stacey_lightning.execution.deaths import requeue_stale
from stacey_lightning.execution.outage import RetryingStorage, StorageUnavailable

__all__ = [
    "StorageError",
    "StorageUnavailable",
    "mask_password",
    "describe",
    "open_storage",
    "dashboard_hint",
    "journal_path",
    "Heartbeat",
    "HEARTBEAT_INTERVAL_S",
    "HEARTBEAT_GRACE_S",
]

HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
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
                heartbeat_stale_trial_callback=requeue_stale,
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
