"""Riding out a storage outage: a database that restarts, fails over or is briefly out of reach, a journal
file whose folder briefly disappears.

``RetryingStorage`` wraps the optuna storage a study opened. A call that fails because the storage cannot
be reached is tried again, with waits growing from 0.5 s to 5 s, until it succeeds or the outage has
lasted ``outage_s`` seconds. The outage is the process's, not the call's: it starts at the first failure
of any thread (the worker's, or its heartbeat's) and ends at the first success, so the limit is the same
for every call, and the process says once that the storage is unreachable and once that it is back.
Past the limit a call raises ``StorageUnavailable``: every finished trial is in the storage, and the same
command, run again, resumes the study. ``ride_out`` waits the same way for a storage to open where it is
known to exist (in a worker process, whose parent opened it); elsewhere a storage that cannot be opened is
more likely a wrong URL, and is said at once.

Why one wrapper around the whole storage rather than retries where the tuner calls Optuna: Optuna calls
the storage itself too (``ask`` pops enqueued trials, ``tell`` and ``report`` write, the pruner reads inside
Lightning's fit), and a wrapper is the one place that every one of those calls passes through.

A call that changes the storage may have taken effect although it raised: the server committed it, and
the connection died before the answer came back. Retrying is harmless for the calls that set a value
(attributes, parameters, intermediate values, heartbeats). The others are checked before or after a retry:

- ``create_new_trial``: every trial is created with a unique token among its system attributes
  (``CREATION_TOKEN``), so a retry first looks for the trial that carries it and returns that one.
- ``set_trial_state_values`` to a finished state: a retry that finds the trial already finished in that
  state (``UpdateFinishedTrialError``) has succeeded.
- ``set_trial_state_values`` to RUNNING (``ask`` taking an enqueued trial): every process first writes
  its claim on the trial (``CLAIMED_BY``), then takes it. A retry that finds the trial RUNNING with no
  claim but this process's took it (any other taker's claim would have landed before its take).

Taking an enqueued trial is a read (is it WAITING?) then a write. PostgreSQL and MySQL lock the row
between the two, and the journal orders them in its log, but SQLite does not: two processes that read
WAITING at once both took the trial and trained it (7 trials of 100 in a test of two processes), and the
second to finish failed on a finished trial. For a SQLite file, ``take_lock`` names a lock file beside it
that serialises the takes of every process on the machine (one SQLite file is one machine's).

After an outage the trials of every worker have old heartbeats, through no fault of theirs: for
``heartbeat_grace_s`` after this process saw its storage come back, it judges no other worker's heartbeat,
so that a live worker has time to beat again before anyone fails its trial as stale.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import optuna
from filelock import FileLock
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.execution.optuna_private import RDB_LOGGER, BaseHeartbeat, stale_trial_ids, trial_id

__all__ = [
    "RetryingStorage",
    "Outage",
    "StorageUnavailable",
    "ride_out",
    "gave_up",
    "is_outage",
    "claimants",
    "CREATION_TOKEN",
    "CLAIMED_BY",
]

CREATION_TOKEN = "stacey:creation_token"  # trial system attribute: which create_new_trial call made it
# Trial system attribute CLAIMED_BY + "host:pid": that process made the trial RUNNING (created or took it).
# Written with the trial, or before taking it, so that a worker that stops before it records its
# hostname and pid (an outage past the limit) leaves a trial that fail_dead_trials can still fail.
CLAIMED_BY = "stacey:claimed_by:"
_FIRST_WAIT_S = 0.5
_LONGEST_WAIT_S = 5.0
# PEP 249 names a driver's "cannot reach the database" errors OperationalError and InterfaceError, and
# SQLAlchemy wraps them in classes of the same names: one check by name covers every driver. TimeoutError:
# SQLAlchemy's pool found no connection in time.
_OUTAGE_ERRORS = ("OperationalError", "InterfaceError", "TimeoutError")

_Result = TypeVar("_Result")


class _QuietFallbackWarning(logging.Filter):
    """RDBStorage warns, over several lines, whenever a trial query raised an OperationalError and it tries
    the slow way. In an outage the slow way fails too, and the outage has its own line; elsewhere (SQLite's
    limit on query variables) the slow way works, and the warning asks nothing of the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Caught an error from sqlalchemy") and "OperationalError" in message)


_RDB_LOGGER = logging.getLogger(RDB_LOGGER)
_QUIET_FALLBACK = _QuietFallbackWarning()


class StorageUnavailable(RuntimeError):
    """The storage stayed out of reach for longer than the outage limit; the message is one line."""


def gave_up(shown: str, outage_s: float, cause: str | None = None) -> StorageUnavailable:
    """The error that stops a study whose storage ``shown`` stayed out of reach for ``outage_s`` seconds."""
    because = f" ({cause})" if cause else ""
    return StorageUnavailable(
        f"storage {shown} unreachable for longer than the {outage_s:g} s allowed{because}; every finished "
        "trial is kept: run the same command again once the storage is back (or allow a longer outage "
        "with --storage-outage SECONDS)"
    )


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_outage_error(error: BaseException) -> bool:
    if isinstance(error, OSError) or getattr(error, "connection_invalidated", False):
        return True
    return any(kind.__name__ in _OUTAGE_ERRORS for kind in type(error).__mro__)


def is_outage(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, means that the storage could not be reached (a lost
    or refused connection, a database starting up or shutting down, a file or folder gone), rather than a
    request the storage refused."""
    # RDBStorage raises StorageInternalError "from" SQLAlchemy's error, itself "from" the driver's.
    return any(_is_outage_error(link) for link in _chain(error))


def _one_line(error: BaseException) -> str:
    """Why the storage is out of reach, as "Type: first line": the deepest outage error of the chain (the
    driver's own, such as "Connection refused"), else the deepest error."""
    chain = _chain(error)
    cause = next((link for link in reversed(chain) if _is_outage_error(link) and str(link).strip()), chain[-1])
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0][:200]}" if lines else type(cause).__name__


def _retried(name: str) -> Callable[..., Any]:
    """A method that calls the backend's ``name`` through the storage's ``Outage``."""

    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        call = getattr(self._backend, name)
        return self._outage.retry(lambda retrying: call(*args, **kwargs))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"The backend's ``{name}``, retried through an outage."
    return method


class Outage:
    """One process's view of its storage's reachability, and the retry loop its calls go through.

    Args:
        shown: how messages name the storage (its URL with the password masked).
        outage_s: how long an outage may last before calls raise ``StorageUnavailable``.
    """

    def __init__(self, shown: str, outage_s: float) -> None:
        if not outage_s >= 0:
            raise ValueError(f"storage_outage_s: must be a number of seconds >= 0, got {outage_s}")
        self.shown = shown
        self.outage_s = outage_s
        self.back_at = -float("inf")  # time.monotonic() when the last outage ended
        self._lock = threading.Lock()
        self._began: float | None = None  # time.monotonic() of the outage's first failure
        self._cause = ""

    def __getstate__(self) -> dict[str, Any]:
        # Pickled with the trial under ddp_spawn; a lock does not pickle.
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def retry(self, attempt: Callable[[bool], _Result]) -> _Result:
        """``attempt(retrying)`` until it returns, raises something other than an outage, or the outage
        passes its limit; ``retrying`` is True after a failed attempt (the call may have taken effect)."""
        wait = _FIRST_WAIT_S
        retrying = False
        while True:
            try:
                result = attempt(retrying)
            except Exception as error:
                if not is_outage(error):
                    raise
                lasted = self._failed(error)
                if lasted >= self.outage_s:
                    raise gave_up(self.shown, self.outage_s, self._cause) from None
                time.sleep(min(wait, self.outage_s - lasted))
                wait = min(2 * wait, _LONGEST_WAIT_S)
                retrying = True
                continue
            if self._began is not None:
                self._succeeded()
            return result

    def _failed(self, error: BaseException) -> float:
        """Note a failed call; the seconds since the outage began (announcing it if this is its start)."""
        with self._lock:
            now = time.monotonic()
            if self._began is None:
                self._began = now
                self._cause = _one_line(error)
                print(
                    f"[stacey-tune] storage {self.shown} unreachable ({self._cause}): retrying for up to "
                    f"{self.outage_s:g} s",
                    flush=True,
                )
            return now - self._began

    def _succeeded(self) -> None:
        with self._lock:
            if self._began is None:  # another thread ended the outage first
                return
            now = time.monotonic()
            print(f"[stacey-tune] storage {self.shown} is back after {now - self._began:.0f} s", flush=True)
            self._began = None
            self.back_at = now


def ride_out(call: Callable[[], _Result], shown: str, outage_s: float) -> _Result:
    """``call()``, retried through an outage of the storage ``shown`` of up to ``outage_s`` seconds: for
    opening a storage that is known to exist (a worker process of a study its parent opened)."""
    return Outage(shown, outage_s).retry(lambda retrying: call())


class RetryingStorage(BaseStorage, BaseHeartbeat):
    """An optuna storage that retries its backend's calls through an outage of up to ``outage_s`` seconds.

    Args:
        backend: the storage to wrap (for an RDB, Optuna's cached storage over it, as ``create_study``
            would make).
        shown: how messages name the storage (its URL with the password masked).
        outage_s: how long an outage may last before calls raise ``StorageUnavailable``. Default 300.
        heartbeat_grace_s: how long after an outage this process leaves other workers' heartbeats unjudged
            (the grace after which a trial without a heartbeat is stale). Default 120.
        take_lock: a file whose lock serialises the taking of enqueued trials across processes (for a
            SQLite database; see the module's docstring). Default None: the backend is atomic itself.
    """

    def __init__(
        self,
        backend: BaseStorage,
        shown: str,
        outage_s: float = 300.0,
        *,
        heartbeat_grace_s: float = 120.0,
        take_lock: str | None = None,
    ) -> None:
        self._backend = backend
        self._outage = Outage(shown, outage_s)
        self._heartbeat_grace_s = heartbeat_grace_s
        self._take_lock = take_lock
        _RDB_LOGGER.addFilter(_QUIET_FALLBACK)  # once: a filter already there is not added again

    @property
    def backend(self) -> BaseStorage:
        """The wrapped storage."""
        return self._backend

    # Calls whose repetition does no harm: they read, or set a value to what the first attempt set.
    create_new_study = _retried("create_new_study")
    delete_study = _retried("delete_study")
    set_study_user_attr = _retried("set_study_user_attr")
    set_study_system_attr = _retried("set_study_system_attr")
    get_study_id_from_name = _retried("get_study_id_from_name")
    get_study_name_from_id = _retried("get_study_name_from_id")
    get_study_directions = _retried("get_study_directions")
    get_study_user_attrs = _retried("get_study_user_attrs")
    get_study_system_attrs = _retried("get_study_system_attrs")
    get_all_studies = _retried("get_all_studies")
    set_trial_param = _retried("set_trial_param")
    get_trial_id_from_study_id_trial_number = _retried("get_trial_id_from_study_id_trial_number")
    get_trial_number_from_id = _retried("get_trial_number_from_id")
    get_trial_param = _retried("get_trial_param")
    set_trial_intermediate_value = _retried("set_trial_intermediate_value")
    set_trial_user_attr = _retried("set_trial_user_attr")
    set_trial_system_attr = _retried("set_trial_system_attr")
    get_trial = _retried("get_trial")
    get_all_trials = _retried("get_all_trials")
    get_best_trial = _retried("get_best_trial")
    get_n_trials = _retried("get_n_trials")
    get_trial_params = _retried("get_trial_params")
    get_trial_user_attrs = _retried("get_trial_user_attrs")
    get_trial_system_attrs = _retried("get_trial_system_attrs")
    record_heartbeat = _retried("record_heartbeat")

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        token = uuid.uuid4().hex
        template = _with_token(template_trial, token)

        def attempt(retrying: bool) -> int:
            if retrying:
                made = next(
                    (
                        trial_id(trial)
                        for trial in self._backend.get_all_trials(study_id, deepcopy=False)
                        if trial.system_attrs.get(CREATION_TOKEN) == token
                    ),
                    None,
                )
                if made is not None:
                    return made
            return self._backend.create_new_trial(study_id, template)

        return self._outage.retry(attempt)

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Any = None) -> bool:
        taking = state == TrialState.RUNNING  # ask() taking an enqueued trial
        key = _claim_key()
        if taking:  # the claim lands before the take (see the module's docstring)
            self._outage.retry(lambda retrying: self._backend.set_trial_system_attr(trial_id, key, True))

        def attempt(retrying: bool) -> bool:
            try:
                with _locked(self._take_lock if taking else None):
                    updated = self._backend.set_trial_state_values(trial_id, state=state, values=values)
            except optuna.exceptions.UpdateFinishedTrialError:
                if retrying and self._backend.get_trial(trial_id).state == state:
                    return True
                raise
            if updated or not (retrying and taking):
                return updated
            trial = self._backend.get_trial(trial_id)
            claims = [name for name in trial.system_attrs if name.startswith(CLAIMED_BY)]
            return trial.state == TrialState.RUNNING and claims == [key]

        return self._outage.retry(attempt)

    def check_trial_is_updatable(self, trial_id: int, trial_state: TrialState) -> None:
        self._backend.check_trial_is_updatable(trial_id, trial_state)

    def remove_session(self) -> None:
        self._backend.remove_session()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:  # Optuna's private hook: optuna_private.py
        if time.monotonic() - self._outage.back_at < self._heartbeat_grace_s:
            return []
        return self._outage.retry(lambda retrying: stale_trial_ids(self._backend, study_id))

    def get_heartbeat_interval(self) -> int | None:
        # The journal has no heartbeat: None tells Optuna and the tuner's Heartbeat so.
        return self._backend.get_heartbeat_interval() if isinstance(self._backend, BaseHeartbeat) else None

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        if isinstance(self._backend, BaseHeartbeat):
            return self._backend.get_heartbeat_stale_trial_callback()
        return None


def _locked(path: str | None) -> contextlib.AbstractContextManager[Any]:
    """An exclusive lock on the file ``path`` (created if need be) across processes, for a ``with`` block
    (``filelock``: flock on POSIX, msvcrt on Windows; a killed holder's lock is released with its process);
    no lock for None."""
    return FileLock(path) if path is not None else contextlib.nullcontext()


def _claim_key() -> str:
    return f"{CLAIMED_BY}{socket.gethostname()}:{os.getpid()}"


def claimants(trial: FrozenTrial) -> list[tuple[str, int]]:
    """The (host, pid) of every process that made ``trial`` RUNNING or tried to (``CLAIMED_BY``)."""
    owners = []
    for key in trial.system_attrs:
        if key.startswith(CLAIMED_BY):
            host, _, pid = key[len(CLAIMED_BY) :].rpartition(":")
            owners.append((host, int(pid)))
    return owners


def _with_token(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """``template`` with ``token`` among its system attributes; for None, a trial as Optuna would create it
    (RUNNING, started now) that also says this process holds it (``CLAIMED_BY``)."""
    if template is None:
        return FrozenTrial(
            number=-1,
            state=TrialState.RUNNING,
            value=None,
            values=None,
            datetime_start=datetime.now(),
            datetime_complete=None,
            params={},
            distributions={},
            user_attrs={},
            system_attrs={CREATION_TOKEN: token, _claim_key(): True},
            intermediate_values={},
            trial_id=-1,
        )
    marked = copy.copy(template)
    marked.system_attrs = {**template.system_attrs, CREATION_TOKEN: token}
    return marked
