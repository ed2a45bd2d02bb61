"""Workers: processes that run trials of one study until it has ``n_trials`` finished trials.

``workers=1`` runs the loop in the calling process; more start that many processes (spawned, so
they share nothing but the storage). With GPUs, each worker process gets its own ``devices`` GPUs
through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import replace

from optuna.trial import TrialState

from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import best_checkpoint, confirm, outputs
from stacey_lightning.tuner.attributes import ANCHOR, FAIL_REASON, HOSTNAME, PID, SURPLUS
from stacey_lightning.tuner.budget import budget_is_spent, over_budget
from stacey_lightning.tuner.ddp import RankZero
from stacey_lightning.tuner.outage import StorageUnavailable, gave_up, ride_out
from stacey_lightning.tuner.spec import StudySpec
from stacey_lightning.tuner.storage import describe, fail_dead_trials, is_surplus, open_study, requeue, study_is_full
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
        search = confirm.search_spec(spec)  # the search's share of the trials and the budget
        while True:
            fail_dead_trials(self.study)
            trials = self.study.get_trials(deepcopy=False)
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


def run_worker_processes(spec: StudySpec, call: int) -> bool:
    """Run ``spec.workers`` worker processes to the end; returns True if interrupted by Ctrl-C."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_process,
            args=(replace(spec, worker_index=index), call),
            name=f"stacey-tune-worker-{index}",
        )
        for index in range(spec.workers)
    ]
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
    if interrupted:
        return True
    # A worker that gave up on the storage is no error of its own; and if another worker ended normally,
    # it saw the study through, so the storage came back.
    if all(p.exitcode == _STORAGE_GAVE_UP for p in processes):
        raise gave_up(describe(spec.storage), spec.storage_outage_s)
    failed = [p for p in processes if p.exitcode not in (0, None, _STORAGE_GAVE_UP)]
    if failed:
        raise TooManyFailures(
            f"{len(failed)} of {spec.workers} workers stopped with an error "
            f"(exit codes {[p.exitcode for p in failed]}); see their messages above"
        )
    return interrupted
