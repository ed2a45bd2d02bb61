"""Dead workers: noticing them, failing their trials, and trying a configuration again at most twice.

Every trial records its worker's ``HOSTNAME`` and ``PID``. A worker fails, at once, the RUNNING trials of
dead processes on its own host (and the supervisor of ``--workers N`` processes fails those of a child that
died, knowing how: supervisor.py); trials of other hosts are failed by Optuna's heartbeat (RDB storages
only) after ``storage.HEARTBEAT_GRACE_S``. Either way the parameters are enqueued again (``RETRY_OF``),
with how the worker died (``WORKER_DEATHS``), at most ``MAX_TRIES`` tries in all: a configuration that
takes its process down (the kernel's OOM killer, a crash in an extension) is then failed for good with
the reason ("killed by signal 9 twice: out of memory?"), and, like any failed trial, does not count, so
the study fills its places with other configurations.
"""

from __future__ import annotations

import os
import signal
import socket

import optuna
from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import (
    ANCHOR,
    CONFIRMS,
    FAIL_REASON,
    HOSTNAME,
    LADDER,
    PID,
    RETRY_OF,
    RUNG_COORDINATES,
    TRIAL_SEED,
    WORKER_DEATHS,
)
from stacey_lightning.execution.optuna_private import storage_of, trial_id
from stacey_lightning.execution.outage import claimants

__all__ = ["requeue", "requeue_stale", "fail_dead_trials", "death_text", "MAX_TRIES"]

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


# What a retry keeps of the trial it runs again.
_KEPT = (CONFIRMS, TRIAL_SEED, WORKER_DEATHS, ANCHOR, LADDER, *RUNG_COORDINATES)


def requeue(study: optuna.Study, trial: FrozenTrial, deaths: list[int | None] | None = None) -> None:
    """Enqueue a failed trial's parameters again (a new WAITING trial with ``RETRY_OF``); a confirmation
    run stays one (its ``CONFIRMS`` and ``TRIAL_SEED``, confirm.py), an anchor its name and rung (``ANCHOR``,
    ``LADDER``: the ladder climbs from it), and the deaths of the worker processes that ran the parameters
    go with them (``WORKER_DEATHS``): ``deaths``, where the trial's own worker died."""
    kept = {key: trial.user_attrs[key] for key in _KEPT if key in trial.user_attrs}
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
            which has not reaped it yet (supervisor.py): its trials are failed with how it ended.
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
        storage, number = storage_of(study), trial_id(trial)  # no public call fails a trial by id
        storage.set_trial_user_attr(number, FAIL_REASON, death_text(deaths))
        if not storage.set_trial_state_values(number, TrialState.FAIL):
            return
    except optuna.exceptions.UpdateFinishedTrialError:
        return
    _after_death(study, trial, deaths)


def requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
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
