"""Workers: the loop that trains trials of one study until ``study.admission`` says it is done.

``workers=1`` runs the loop in the calling process; more start that many processes under
``execution.supervisor``, which replaces one that a signal kills (the kernel's OOM killer): its trial is
failed with the reason and re-queued for a second try at most (``deaths.MAX_TRIES``), so that one command
finishes the study. With ``workers=1`` such a kill ends the command itself; the next run of it fails the
dead trial and counts the try, so a configuration is not tried more than twice either. With GPUs, each
worker process gets its own ``devices`` GPUs through CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from dataclasses import replace

import optuna
from optuna.trial import TrialState

from stacey_lightning.attributes import FAIL_REASON, HOSTNAME, PID, SURPLUS
from stacey_lightning.execution.ddp import RankZero
from stacey_lightning.execution.deaths import fail_dead_trials, requeue
from stacey_lightning.execution.optuna_private import storage_of
from stacey_lightning.execution.outage import StorageUnavailable, ride_out
from stacey_lightning.execution.storage import describe
from stacey_lightning.execution.supervisor import STORAGE_GAVE_UP, Crew, Supervisor, TooManyFailures, worker_devices
from stacey_lightning.search.anchors import enqueue_rung, ladders_for
from stacey_lightning.search.ladder import next_rung
from stacey_lightning.study import confirm
from stacey_lightning.study.admission import Circumstances, Verdict, admission
from stacey_lightning.study.open_study import open_study
from stacey_lightning.study.spec import StudySpec
from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import best_checkpoint, outputs
from stacey_lightning.tuner.trial import run_trial

__all__ = ["Worker", "run_worker_processes", "TooManyFailures"]

# How often a worker whose search is over looks again for the last search trials to end: the candidates
# whose confirmation runs it enqueues are known then (confirm.py).
CONFIRM_POLL_S = 2.0


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
            while (trial := self._next_trial()) is not None:
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

    def _circumstances(self) -> Circumstances:
        heartbeats = bool(getattr(storage_of(self.study), "get_heartbeat_interval", lambda: None)())
        return Circumstances(time.monotonic() - self.spec.started, socket.gethostname(), heartbeats)

    def _climb(self) -> None:
        """Enqueue the winner's next rung (``search.ladder``) where no enqueued search point waits."""
        spec, searching = self.spec, confirm.search_trials(self.study.get_trials(deepcopy=False))
        if any(t.state == TrialState.WAITING for t in searching):
            return
        ladders = ladders_for(spec.optimizer, spec.space)
        rung = next_rung(searching, ladders, spec.space, minimize=spec.direction == "minimize")
        if rung is not None:
            enqueue_rung(self.study, rung, spec.space)

    def _next_trial(self) -> optuna.Trial | None:
        """The next trial to train, or None when the study is done. A trial that a racing worker made
        surplus is failed before training (its enqueued parameters, if any, are queued again)."""
        while True:
            fail_dead_trials(self.study)
            before = admission(self.study.get_trials(deepcopy=False), self.spec, now=self._circumstances())
            if before.verdict == Verdict.DONE:
                return None
            if before.verdict == Verdict.WAIT:
                time.sleep(CONFIRM_POLL_S)
                continue
            if before.verdict == Verdict.CONFIRM:
                confirm.enqueue_run(self.study, *before.run)
            elif before.searching and self.spec.anchors:
                self._climb()
            trial = self.study.ask()
            trial.set_user_attr(HOSTNAME, socket.gethostname())
            trial.set_user_attr(PID, os.getpid())
            held = admission(self.study.get_trials(deepcopy=False), self.spec, trial.number)
            if held.verdict == Verdict.ADMIT:
                return trial
            trial.set_user_attr(SURPLUS, True)
            trial.set_user_attr(FAIL_REASON, held.reason)
            self.study.tell(trial, state=TrialState.FAIL)
            if held.requeue:
                requeue(self.study, self.study.get_trials(deepcopy=False)[trial.number])


def work_left(spec: StudySpec, study: optuna.Study) -> bool:
    """Whether the study may still want a trial that the workers running now will not start. Running trials
    hold their places: if their workers die too, those are replaced then."""
    # As a worker that may wait: a search whose last trials still run has work left (its confirmation runs).
    now = Circumstances(elapsed=time.monotonic() - spec.started, heartbeats=True)
    return admission(study.get_trials(deepcopy=False), spec, now=now).verdict != Verdict.DONE


def _worker_process(spec: StudySpec, call: int, index: int) -> None:
    spec = replace(spec, worker_index=index)
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
            sys.exit(STORAGE_GAVE_UP)


def run_worker_processes(spec: StudySpec, call: int, study: optuna.Study) -> bool:
    """Run ``spec.workers`` worker processes to the end, replacing each that dies (``execution.supervisor``);
    returns True if interrupted by Ctrl-C."""
    crew = Crew(
        target=functools.partial(_worker_process, spec, call),
        workers=spec.workers,
        max_deaths=spec.max_consecutive_failures,
        work_left=functools.partial(work_left, spec, study),
        storage=describe(spec.storage),
        outage_s=spec.storage_outage_s,
    )
    return Supervisor(study, crew).run()
