"""Worker processes and their supervisor: ``workers`` processes on this host, each running ``target(index)``
until the study is done, and one that dies replaced while work is left.

Spawned, so that they share nothing but the storage. A worker *dies* when a signal ends it (the kernel's OOM
killer sends SIGKILL; a crash in an extension, SIGSEGV) or when it exits with an error status while holding
a RUNNING trial; its trial is failed at once, here, where how the process ended is known, and re-queued
unless its configuration has had its tries (``deaths.MAX_TRIES``). Nothing here knows what a trial trains.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from stacey_lightning.attributes import HOSTNAME, PID
from stacey_lightning.execution.deaths import death_text, fail_dead_trials
from stacey_lightning.execution.outage import StorageUnavailable, gave_up

__all__ = ["Supervisor", "TooManyFailures", "worker_devices", "STORAGE_GAVE_UP"]

# A worker process's exit status when its storage stayed out of reach past the limit: EX_TEMPFAIL
# (sysexits.h), "try again later". The supervisor says so once, for all of them.
STORAGE_GAVE_UP = 75


class TooManyFailures(RuntimeError):
    """Raised when ``max_consecutive_failures`` trials in a row failed, or as many worker processes died in a
    row with no trial finishing between them."""


def worker_devices(devices: object, worker_index: int, visible: int) -> str | None:
    """CUDA_VISIBLE_DEVICES for worker ``worker_index`` when each worker takes ``devices`` of the
    ``visible`` GPUs, or None if there are not enough GPUs to give it its own."""
    if not (isinstance(devices, int) and devices > 0) or visible < devices * (worker_index + 1):
        return None
    first = devices * worker_index
    return ",".join(str(i) for i in range(first, first + devices))


@dataclass(frozen=True)
class Crew:
    """What the supervisor runs: ``workers`` processes of ``target(index)`` (picklable: they are spawned),
    named ``name``-index; no more replaced after ``max_deaths`` deaths in a row with no trial finishing
    between them; ``work_left()`` says whether the study may still want a trial that the running workers
    will not start; ``storage`` (as printed) and ``outage_s`` name the storage a worker gave up on."""

    target: Callable[[int], None]
    workers: int
    max_deaths: int
    work_left: Callable[[], bool]
    storage: str
    outage_s: float
    name: str = "stacey-tune-worker"


class Supervisor:
    """Starts the worker processes, waits for them, and replaces a worker that dies while the study goes on.

    A worker *dies* when a signal ends it (the kernel's OOM killer sends SIGKILL; a crash in an extension,
    SIGSEGV) or when it exits with an error status while holding a RUNNING trial. Its trial is failed at
    once, here, with how the process ended, and re-queued unless its configuration has had its tries
    (``deaths.MAX_TRIES``); a new worker process takes the dead one's place (and its GPUs). After
    ``crew.max_deaths`` deaths with no trial finishing between them, no more are replaced: a task
    that takes every process down stops the study, as one that fails every trial does. A worker that exits
    with an error holding no trial (``TooManyFailures``, a bug) is not replaced.
    """

    def __init__(self, study: optuna.Study, crew: Crew) -> None:
        self.study = study
        self.crew = crew
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[int, tuple[int, multiprocessing.process.BaseProcess]] = {}  # by sentinel
        self.exit_codes: dict[int, int] = {}  # by worker index: how the last process of each ended
        self.deaths_in_a_row = 0
        self.finished_at_last_death: int | None = None
        self.last_death = ""
        self.stopped_replacing = False

    def run(self) -> bool:
        for index in range(self.crew.workers):
            self._start(index)
        try:
            while self.running:
                ready = multiprocessing.connection.wait(list(self.running))
                ended = [self.running.pop(sentinel) for sentinel in ready]
                # Every ended process's trials first: starting a process reaps the ended ones (multiprocessing's
                # cleanup), and a reaped worker's trial could be failed by another worker not knowing how it died.
                died = [(index, process) for index, process in ended if self._bury(index, process)]
                for _, process in ended:
                    process.join()
                for index, process in died:
                    self._replace(index, process)
        except KeyboardInterrupt:
            processes = [process for _, process in self.running.values()]
            for process in processes:
                if process.is_alive():
                    os.kill(process.pid, signal.SIGINT)
            for process in processes:
                process.join()
            return True
        self._check()
        return False

    def _start(self, index: int) -> None:
        process = self.context.Process(target=self.crew.target, args=(index,), name=f"{self.crew.name}-{index}")
        process.start()
        self.running[process.sentinel] = (index, process)

    def _bury(self, index: int, process: multiprocessing.process.BaseProcess) -> bool:
        """Note how worker ``index`` ended and fail the trials it held; whether it died (to be replaced)."""
        code = _exit_code(process)
        self.exit_codes[index] = code
        if code in (0, STORAGE_GAVE_UP):
            return False
        try:
            died = code < 0 or self._held_a_trial(process.pid)
            fail_dead_trials(self.study, ended=(process.pid, code))
        except StorageUnavailable:  # its trial stays RUNNING: the same command, run again, fails it
            self.exit_codes[index] = STORAGE_GAVE_UP
            return False
        return died

    def _held_a_trial(self, pid: int) -> bool:
        host = socket.gethostname()
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any(t.user_attrs.get(PID) == pid and t.user_attrs.get(HOSTNAME) == host for t in trials)

    def _replace(self, index: int, process: multiprocessing.process.BaseProcess) -> None:
        """Start a new worker in place of the dead one, unless deaths follow each other with nothing finishing."""
        count = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in self.study.get_trials(deepcopy=False))
        self.deaths_in_a_row = self.deaths_in_a_row + 1 if count == self.finished_at_last_death else 1
        self.finished_at_last_death = count
        self.last_death = f"worker process {process.pid} {death_text([self.exit_codes[index]])}"
        if not self.crew.work_left():
            print(f"[stacey-tune] {self.last_death}; the other workers finish the study", flush=True)
            self.exit_codes[index] = 0  # its trial is failed and re-queued: nothing of the study is lost
            return
        if self.deaths_in_a_row >= self.crew.max_deaths:
            self.stopped_replacing = True
            print(f"[stacey-tune] {self.last_death}; not replaced: {self.deaths_in_a_row} died in a row", flush=True)
            return
        print(f"[stacey-tune] {self.last_death}; starting another in its place", flush=True)
        self._start(index)

    def _check(self) -> None:
        """Raise if the workers did not see the study through."""
        codes = list(self.exit_codes.values())
        # A worker that gave up on the storage is no error of its own; and if another worker ended normally,
        # it saw the study through, so the storage came back.
        if all(code == STORAGE_GAVE_UP for code in codes):
            raise gave_up(self.crew.storage, self.crew.outage_s)
        if self.stopped_replacing:
            raise TooManyFailures(
                f"stopping: {self.deaths_in_a_row} worker processes died in a row with no trial finishing "
                f"between them; the last one: {self.last_death}"
            )
        failed = [code for code in codes if code not in (0, STORAGE_GAVE_UP)]
        if failed:
            raise TooManyFailures(
                f"{len(failed)} of {self.crew.workers} workers stopped with an error "
                f"(exit codes {failed}); see their messages above"
            )


def _exit_code(process: multiprocessing.process.BaseProcess) -> int:
    """The exit code of a worker process that has ended (negative: the signal that ended it), read without
    reaping it where the platform allows: until it is reaped, the process is a zombie that the other workers'
    ``fail_dead_trials`` take for alive, so its trials are failed here, where how it ended is known."""
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    except (AttributeError, ChildProcessError):  # no waitid (Windows, macOS before Python 3.13), or reaped
        process.join()
        return process.exitcode
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
