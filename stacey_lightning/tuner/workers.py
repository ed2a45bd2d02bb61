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
import time
from dataclasses import replace

from optuna.trial import TrialState

from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import outputs
from stacey_lightning.tuner.attributes import FAIL_REASON, HOSTNAME, PID, SURPLUS, Settings
from stacey_lightning.tuner.ddp import RankZero
from stacey_lightning.tuner.storage import fail_dead_trials, is_surplus, open_study, requeue, study_is_full
from stacey_lightning.tuner.trial import run_trial

__all__ = ["Worker", "run_worker_processes", "TooManyFailures", "worker_devices"]


class TooManyFailures(RuntimeError):
    """Raised when a worker saw ``max_consecutive_failures`` failing trials in a row."""


class Worker:
    """Runs trials until the study has n_trials finished, the timeout passes, or Ctrl-C."""

    def __init__(self, settings: Settings, call: int) -> None:
        self.settings = settings
        self.make = resolve_task(settings.task).make
        self.study = open_study(settings, settings.worker_index)
        self.rank_zero = RankZero(call)

    def run(self) -> bool:
        """Returns True if interrupted by Ctrl-C."""
        settings = self.settings
        failures = 0
        try:
            while settings.timeout is None or time.monotonic() - settings.started < settings.timeout:
                trial = self._next_trial()
                if trial is None:
                    break
                outcome = run_trial(settings, self.study, trial, self.make, self.rank_zero)
                print(outputs.progress_line(self.study, trial.number, outcome, settings), flush=True)
                failures = failures + 1 if outcome.state == TrialState.FAIL else 0
                if failures >= settings.max_consecutive_failures:
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
        while True:
            fail_dead_trials(self.study)
            if study_is_full(self.study.get_trials(deepcopy=False), self.settings.n_trials):
                return None
            trial = self.study.ask()
            trial.set_user_attr(HOSTNAME, socket.gethostname())
            trial.set_user_attr(PID, os.getpid())
            if not is_surplus(self.study.get_trials(deepcopy=False), trial.number, self.settings.n_trials):
                return trial
            trial.set_user_attr(SURPLUS, True)
            trial.set_user_attr(FAIL_REASON, f"not started: the study already had {self.settings.n_trials} trials")
            self.study.tell(trial, state=TrialState.FAIL)
            frozen = self.study.get_trials(deepcopy=False)[trial.number]
            if frozen.system_attrs.get("fixed_params"):
                requeue(self.study, frozen)


def worker_devices(devices: object, worker_index: int, visible: int) -> str | None:
    """CUDA_VISIBLE_DEVICES for worker ``worker_index`` when each worker takes ``devices`` of the
    ``visible`` GPUs, or None if there are not enough GPUs to give it its own."""
    if not (isinstance(devices, int) and devices > 0) or visible < devices * (worker_index + 1):
        return None
    first = devices * worker_index
    return ",".join(str(i) for i in range(first, first + devices))


def _worker_process(settings: Settings, call: int) -> None:
    if "CUDA_VISIBLE_DEVICES" not in os.environ:
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        assigned = worker_devices(settings.trainer_kwargs.get("devices", 1), settings.worker_index, visible)
        if assigned is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = assigned
    with outputs.quiet_libraries():
        Worker(settings, call).run()


def run_worker_processes(settings: Settings, workers: int, call: int) -> bool:
    """Run ``workers`` worker processes to the end; returns True if interrupted by Ctrl-C."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_worker_process,
            args=(replace(settings, worker_index=index), call),
            name=f"stacey-tune-worker-{index}",
        )
        for index in range(workers)
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
    failed = [p for p in processes if p.exitcode not in (0, None)]
    if failed and not interrupted:
        raise TooManyFailures(
            f"{len(failed)} of {workers} workers stopped with an error "
            f"(exit codes {[p.exitcode for p in failed]}); see their messages above"
        )
    return interrupted
