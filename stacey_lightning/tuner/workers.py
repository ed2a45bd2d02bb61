"""Workers: processes that run trials of one study until it has ``n_trials`` finished trials.

``workers=1`` runs the loop in the calling process; more start that many processes (spawned, so
they share nothing but the storage), and the calling process supervises them: a worker that a signal
kills (the kernel's OOM killer) has its trial failed with the reason, re-queued for a second try at most
(``storage.MAX_TRIES``), and is replaced, so that one command finishes the study (``_Supervisor``). With
``workers=1`` such a kill ends the command itself; the next run of it fails the dead trial and counts
the try, so a configuration is not tried more than twice either. With GPUs, each worker process gets its
own ``devices`` GPUs through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from dataclasses import replace

import optuna
from optuna.trial import TrialState

from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import best_checkpoint, confirm, outputs
from stacey_lightning.tuner.attributes import ANCHOR, FAIL_REASON, HOSTNAME, PID, SURPLUS
from stacey_lightning.tuner.budget import budget_is_spent, over_budget
from stacey_lightning.tuner.ddp import RankZero
from stacey_lightning.tuner.outage import StorageUnavailable, gave_up, ride_out
from stacey_lightning.tuner.spec import StudySpec
from stacey_lightning.tuner.storage import (
    death_text,
    describe,
    fail_dead_trials,
    finished,
    is_surplus,
    open_study,
    requeue,
    study_is_full,
)
from stacey_lightning.tuner.trial import run_trial

__all__ = ["Worker", "run_worker_processes", "TooManyFailures", "worker_devices"]


# A worker process's exit status when its storage stayed out of reach past the limit: EX_TEMPFAIL
# (sysexits.h), "try again later". The parent says so once, for all of them.
_STORAGE_GAVE_UP = 75
# How often a worker whose search is over looks again for the last search trials to end: the candidates
# whose confirmation runs it enqueues are known then (confirm.py).
CONFIRM_POLL_S = 2.0
_HELD_ELSEWHERE = "not started: another worker holds"  # a duplicate two workers enqueued: never queued again


class TooManyFailures(RuntimeError):
    """Raised when a worker saw ``max_consecutive_failures`` failing trials in a row."""


class Worker:
    """Runs trials until the study has n_trials finished or its budget of epochs is spent, the timeout
    passes, or Ctrl-C."""

    def __init__(self, spec: StudySpec, call: int) -> None:
        self.spec = spec
        self.make = resolve_task(spec.task).make
        self.study = open_study(spec)
        self.rank_zero = RankZero(call)

    def run(self) -> bool:
        """Returns True if interrupted by Ctrl-C."""
        spec = self.spec
        failures = 0
        try:
            while spec.timeout is None or time.monotonic() - spec.started < spec.timeout:
                trial = self._next_trial()
                if trial is None:
                    break
                outcome = run_trial(spec, self.study, trial, self.make, self.rank_zero)
                print(outputs.progress_line(self.study, trial.number, outcome, spec), flush=True)
                news = confirm.reproduction_line(self.study.get_trials(deepcopy=False), trial.number)
                if news is not None:
                    print(f"[stacey-tune] {news}", flush=True)
                kept = best_checkpoint.settle(self.study, spec)
                if kept is not None:
                    path = spec.output_dir / best_checkpoint.BEST
                    line = f"{path}: trial #{kept.trial.number}'s model ({spec.monitor} = {kept.text()})"
                    print(f"[stacey-tune] {line}", flush=True)
                failures = failures + 1 if outcome.state == TrialState.FAIL else 0
                if failures >= spec.max_consecutive_failures:
                    raise TooManyFailures(
                        f"stopping: {failures} trials in a row failed; the last one (trial "
                        f"{trial.number}) failed with {outcome.reason}"
                    )
        except KeyboardInterrupt:
            return True
        finally:
            self.rank_zero.finish(self.study)
        return False

    def _next_trial(self):
        """The next trial to train, or None when the study is full. A trial that a racing worker made
        surplus is failed before training (its enqueued parameters, if any, are queued again)."""
        spec = self.spec
        while True:
            fail_dead_trials(self.study)
            trials = self.study.get_trials(deepcopy=False)
            search = confirm.search_spec(spec, trials)  # the search's share of the trials and the budget
            if study_is_full(trials, spec.n_trials) or budget_is_spent(trials, spec.budget, spec.max_epochs):
                return None
            searching = confirm.search_trials(trials)
            search_over = search is not spec and (
                study_is_full(searching, search.n_trials) or budget_is_spent(searching, search.budget, spec.max_epochs)
            )
            if search_over:
                if not confirm.ready_to_confirm(trials):  # the candidates are known when the search ends
                    if not self._may_wait(searching):
                        return None
                    time.sleep(CONFIRM_POLL_S)
                    continue
                missing = confirm.missing_run(self.study, spec, trials)
                if missing is not None:
                    confirm.enqueue_run(self.study, *missing)
                elif not any(t.state == TrialState.WAITING and confirm.is_confirmation(t) for t in trials):
                    return None
            trial = self.study.ask()
            trial.set_user_attr(HOSTNAME, socket.gethostname())
            trial.set_user_attr(PID, os.getpid())
            reason = self._surplus_reason(trial.number, spec, search)
            if reason is None:
                return trial
            trial.set_user_attr(SURPLUS, True)
            trial.set_user_attr(FAIL_REASON, reason)
            self.study.tell(trial, state=TrialState.FAIL)
            frozen = self.study.get_trials(deepcopy=False)[trial.number]
            # A search trial's enqueued parameters (an anchor, a retry) wait for the next place while the search
            # has places; a surplus confirmation run is not queued again: missing_run enqueues it while wanted.
            duplicate = reason.startswith(_HELD_ELSEWHERE)
            if frozen.system_attrs.get("fixed_params") and not (
                search_over or duplicate or confirm.is_confirmation(frozen)
            ):
                requeue(self.study, frozen)

    def _may_wait(self, searching: list) -> bool:
        """Whether to wait for the search trials still running (so as to run confirmation runs too): within
        the timeout, and only where a dead runner is noticed: by its stale heartbeat (RDB storages), or
        on this host, where a dead worker's trial is failed at once. Else the workers that run them
        confirm the candidates when they end."""
        spec = self.spec
        if spec.timeout is not None and time.monotonic() - spec.started >= spec.timeout:
            return False
        if getattr(self.study._storage, "get_heartbeat_interval", lambda: None)():  # no public accessor
            return True
        running = [t for t in searching if t.state == TrialState.RUNNING]
        return all(t.user_attrs.get(HOSTNAME) == socket.gethostname() for t in running)

    def _surplus_reason(self, number: int, spec: StudySpec, search: StudySpec) -> str | None:
        """Why trial ``number`` must not train (a racing worker took its place, or it repeats a confirmation
        run another worker holds), or None. A search trial is held to the search's limits."""
        trials = self.study.get_trials(deepcopy=False)
        if confirm.is_confirmation(trials[number]):
            if confirm.is_duplicate(trials, trials[number]):
                return f"{_HELD_ELSEWHERE} this confirmation run"
            if confirm.reproduced(trials) is not None:
                return f"not started: {confirm.SEEDS_DO_NOT_MATTER} (a confirmation run reproduced its trial)"
        else:
            if _is_duplicate_anchor(trials, trials[number]):
                return f"{_HELD_ELSEWHERE} this anchor point"
            spec, trials = search, confirm.search_trials(trials)
        if is_surplus(trials, number, spec.n_trials):
            return f"not started: the study already had {spec.n_trials} trials"
        if over_budget(trials, number, spec.budget, spec.max_epochs):
            return f"not started: the study's budget of {spec.budget} epochs is spent"
        return None


def _is_duplicate_anchor(trials: list, trial) -> bool:
    """Whether a lower-numbered trial already runs or ran this anchor point: two hosts that create the study
    at the same moment can both enqueue the anchors (``skip_if_exists`` sees only what is committed)."""
    name = trial.user_attrs.get(ANCHOR)
    return name is not None and any(
        t.number < trial.number
        and t.user_attrs.get(ANCHOR) == name
        and not t.user_attrs.get(SURPLUS)
        and t.state != TrialState.FAIL
        for t in trials
    )


def worker_devices(devices: object, worker_index: int, visible: int) -> str | None:
    """CUDA_VISIBLE_DEVICES for worker ``worker_index`` when each worker takes ``devices`` of the
    ``visible`` GPUs, or None if there are not enough GPUs to give it its own."""
    if not (isinstance(devices, int) and devices > 0) or visible < devices * (worker_index + 1):
        return None
    first = devices * worker_index
    return ",".join(str(i) for i in range(first, first + devices))


def _worker_process(spec: StudySpec, call: int) -> None:
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        assigned = worker_devices(spec.trainer_kwargs.get("devices", 1), spec.worker_index, visible)
        if assigned is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = assigned
    with outputs.quiet_libraries():
        try:
            # The parent opened the storage: if it cannot be reached now, that is an outage, not a wrong URL.
            worker = ride_out(lambda: Worker(spec, call), describe(spec.storage), spec.storage_outage_s)
            worker.run()
        except StorageUnavailable:
            sys.exit(_STORAGE_GAVE_UP)


def run_worker_processes(spec: StudySpec, call: int, study: optuna.Study) -> bool:
    """Run ``spec.workers`` worker processes to the end, replacing each that dies (see ``_Supervisor``);
    returns True if interrupted by Ctrl-C."""
    return _Supervisor(spec, call, study).run()


class _Supervisor:
    """Starts the worker processes, waits for them, and replaces a worker that dies while the study goes on.

    A worker *dies* when a signal ends it (the kernel's OOM killer sends SIGKILL; a crash in an extension,
    SIGSEGV) or when it exits with an error status while holding a RUNNING trial. Its trial is failed at
    once, here, with how the process ended, and re-queued unless its configuration has had its tries
    (``storage.MAX_TRIES``); a new worker process takes the dead one's place (and its GPUs). After
    ``max_consecutive_failures`` deaths with no trial finishing between them, no more are replaced: a task
    that takes every process down stops the study, as one that fails every trial does. A worker that exits
    with an error holding no trial (``TooManyFailures``, a bug) is not replaced.
    """

    def __init__(self, spec: StudySpec, call: int, study: optuna.Study) -> None:
        self.spec = spec
        self.call = call
        self.study = study
        self.context = multiprocessing.get_context("spawn")
        self.running: dict[int, tuple[int, multiprocessing.process.BaseProcess]] = {}  # by sentinel
        self.exit_codes: dict[int, int] = {}  # by worker index: how the last process of each ended
        self.deaths_in_a_row = 0
        self.finished_at_last_death: int | None = None
        self.last_death = ""
        self.stopped_replacing = False

    def run(self) -> bool:
        for index in range(self.spec.workers):
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
        process = self.context.Process(
            target=_worker_process,
            args=(replace(self.spec, worker_index=index), self.call),
            name=f"stacey-tune-worker-{index}",
        )
        process.start()
        self.running[process.sentinel] = (index, process)

    def _bury(self, index: int, process: multiprocessing.process.BaseProcess) -> bool:
        """Note how worker ``index`` ended and fail the trials it held; whether it died (to be replaced)."""
        code = _exit_code(process)
        self.exit_codes[index] = code
        if code in (0, _STORAGE_GAVE_UP):
            return False
        try:
            died = code < 0 or self._held_a_trial(process.pid)
            fail_dead_trials(self.study, ended=(process.pid, code))
        except StorageUnavailable:  # its trial stays RUNNING: the same command, run again, fails it
            self.exit_codes[index] = _STORAGE_GAVE_UP
            return False
        return died

    def _held_a_trial(self, pid: int) -> bool:
        host = socket.gethostname()
        trials = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return any(t.user_attrs.get(PID) == pid and t.user_attrs.get(HOSTNAME) == host for t in trials)

    def _replace(self, index: int, process: multiprocessing.process.BaseProcess) -> None:
        """Start a new worker in place of the dead one, unless deaths follow each other with nothing finishing."""
        count = finished(self.study.get_trials(deepcopy=False))
        self.deaths_in_a_row = self.deaths_in_a_row + 1 if count == self.finished_at_last_death else 1
        self.finished_at_last_death = count
        self.last_death = f"worker process {process.pid} {death_text([self.exit_codes[index]])}"
        if not self._work_left():
            print(f"[stacey-tune] {self.last_death}; the other workers finish the study", flush=True)
            self.exit_codes[index] = 0  # its trial is failed and re-queued: nothing of the study is lost
            return
        if self.deaths_in_a_row >= self.spec.max_consecutive_failures:
            self.stopped_replacing = True
            print(f"[stacey-tune] {self.last_death}; not replaced: {self.deaths_in_a_row} died in a row", flush=True)
            return
        print(f"[stacey-tune] {self.last_death}; starting another in its place", flush=True)
        self._start(index)

    def _work_left(self) -> bool:
        """Whether the study may still want a trial that the workers running now will not start: it is not
        full, its budget is not spent, and its timeout has not passed (as ``Worker._next_trial`` decides).
        Running trials hold their places: if their workers die too, those are replaced then."""
        spec = self.spec
        if spec.timeout is not None and time.monotonic() - spec.started >= spec.timeout:
            return False
        trials = self.study.get_trials(deepcopy=False)
        return not (study_is_full(trials, spec.n_trials) or budget_is_spent(trials, spec.budget, spec.max_epochs))

    def _check(self) -> None:
        """Raise if the workers did not see the study through."""
        codes = list(self.exit_codes.values())
        # A worker that gave up on the storage is no error of its own; and if another worker ended normally,
        # it saw the study through, so the storage came back.
        if all(code == _STORAGE_GAVE_UP for code in codes):
            raise gave_up(describe(self.spec.storage), self.spec.storage_outage_s)
        if self.stopped_replacing:
            raise TooManyFailures(
                f"stopping: {self.deaths_in_a_row} worker processes died in a row with no trial finishing "
                f"between them; the last one: {self.last_death}"
            )
        failed = [code for code in codes if code not in (0, _STORAGE_GAVE_UP)]
        if failed:
            raise TooManyFailures(
                f"{len(failed)} of {self.spec.workers} workers stopped with an error "
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
