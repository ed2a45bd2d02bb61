"""``tune``: an Optuna study over Stacey's p, lr, alpha and tau (and the rest of a search space), or over a
baseline optimizer's options, one Lightning training run per trial; resumable, parallel, and safe
against dead workers. This module is the orchestration only; each step lives in its own module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from stacey_lightning.attributes import FAIL_REASON, SURPLUS
from stacey_lightning.baselines import STACEY
from stacey_lightning.execution import ddp
from stacey_lightning.execution.storage import describe, open_storage
from stacey_lightning.search.anchors import Anchor, add_start_point, anchors_for, config_anchor, enqueue_anchors
from stacey_lightning.search.calibration import study_gradient_scale
from stacey_lightning.study.admission import Verdict, admission
from stacey_lightning.study.confirm import search_spec, winner
from stacey_lightning.study.open_study import open_study
from stacey_lightning.study.places import finished
from stacey_lightning.study.spec import StudySpec, study_spec
from stacey_lightning.tasks import resolve_task
from stacey_lightning.tuner import best_checkpoint, outputs
from stacey_lightning.tuner.trial import train_as_follower, trial_options
from stacey_lightning.tuner.workers import TooManyFailures, Worker, run_worker_processes

__all__ = ["tune", "run_study", "NoTrialSucceeded", "TooManyFailures"]


class NoTrialSucceeded(RuntimeError):
    """Raised when a study ends with failed trials and none that completed or was pruned."""


def tune(task: str | Callable | StudySpec, /, **settings: Any) -> optuna.Study:
    """Tune Stacey (or a baseline optimizer) on ``task`` and return the ``optuna.Study``.

    ``task`` and ``settings`` are ``study_spec``'s arguments, each documented there (``n_trials``,
    ``budget``, ``space``, ``storage``, ``workers``, ...); or ``task`` is a ``StudySpec`` already built,
    and no settings. Calling ``tune`` again with the same settings resumes the study. On Ctrl-C the
    running trial is failed and re-queued, ``best.yaml`` and the table are written from the finished
    trials, and KeyboardInterrupt is raised again.

    Raises:
        ValueError: a bad setting, space, task option or storage, before any trial runs.
        TooManyFailures: ``max_consecutive_failures`` trials in a row failed.
        NoTrialSucceeded: every trial of the study failed.
    """
    if isinstance(task, StudySpec):
        if settings:
            raise ValueError(f"settings {sorted(settings)}: give a StudySpec or settings, not both")
        return run_study(task)
    return run_study(study_spec(task, **settings))


def run_study(spec: StudySpec) -> optuna.Study:
    """Run the study ``spec`` describes (see ``tune``) and return it."""
    call = ddp.next_call()
    with outputs.quiet_libraries():
        # Every rank, before opening the storage: under torchrun a follower can start before rank 0 and
        # cannot open the default sqlite:///<output>/optuna.db in a folder that does not exist yet.
        spec.output_dir.mkdir(parents=True, exist_ok=True)
        if ddp.is_follower_rank():
            make = resolve_task(spec.task).make
            return ddp.follow_rank_zero(
                open_storage(spec.storage, spec.storage_outage_s),
                spec.study_name,
                call,
                lambda frozen: train_as_follower(spec, make, frozen),
            )
        outputs.check_folder_owner(spec.output_dir, spec.study_name)
        study = open_study(spec)
        _enqueue_first_points(study, spec)
        print(
            f"[stacey-tune] study {spec.study_name!r} ({spec.optimizer}) in {describe(spec.storage)}: "
            f"{outputs.spent_text(study.get_trials(deepcopy=False), spec)}, "
            f"monitor {spec.monitor} ({spec.direction})",
            flush=True,
        )
        if spec.workers == 1:
            interrupted = Worker(spec, call).run()
        else:
            interrupted = run_worker_processes(spec, call, study)
        if interrupted:
            print("[stacey-tune] interrupted: every finished trial is kept; run the same command to resume", flush=True)
        best_checkpoint.settle(study, spec)  # what a worker killed or interrupted after its trial's tell left
        outputs.write_best(study, spec.output_dir, spec.monitor)
        _write_best_cli(study, spec)
        print(outputs.summary_table(study, spec.monitor), flush=True)
    if interrupted:
        raise KeyboardInterrupt  # after the outputs are written: the caller (stacey-tune: status 130) stops too
    _check_some_trial_succeeded(study)
    return study


def _enqueue_first_points(study: optuna.Study, spec: StudySpec) -> None:
    """A new study's start point and anchors, in that order. A start point given to a study that exists joins
    it ahead of the anchors still to come, and says so: it trains at the search's next place, if one is left."""
    start = [config_anchor(spec.start_from, "start_from")] if spec.start_from is not None else []
    if start and study.get_trials(deepcopy=False):
        _add_start_point(study, config_anchor(spec.start_from, "start_from", study_gradient_scale(study)), spec)
    if spec.anchors or start:
        # No more anchors than the search has places: confirmation runs repeat its best (confirm.py).
        anchors = start + (anchors_for(spec.optimizer, spec.space) if spec.anchors else [])
        enqueue_anchors(study, anchors, spec.space, spec.planned_trials, search_spec(spec).planned_trials)


def _add_start_point(study: optuna.Study, start: Anchor, spec: StudySpec) -> None:
    held_by = add_start_point(study, start, spec.space)
    if held_by is not None:
        print(f"[stacey-tune] start_from: study {spec.study_name!r} already has this config (trial {held_by})")
        return
    trials = study.get_trials(deepcopy=False)
    full = admission(trials, spec, trials[-1].number).verdict == Verdict.SURPLUS
    where = "but its search is full: raise --n-trials or --budget to train it" if full else "to train next"
    print(f"[stacey-tune] start_from: its config joins study {spec.study_name!r}, {where}", flush=True)


def _write_best_cli(study: optuna.Study, spec: StudySpec) -> None:
    """A LightningCLI config's study: ``best_cli.yaml``, the best trial as the second config of its fit."""
    config = resolve_task(spec.task).lightning_config
    if (
        config is None
        or spec.optimizer != STACEY
        or not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    ):
        return
    best = winner(study).trial
    config.write_best_cli(
        spec.output_dir,
        stacey_config=trial_options(best),
        params=best.params,
        value=best.value,
        number=best.number,
        seed=spec.seed,
        max_epochs=spec.max_epochs,
        monitor=spec.monitor,
    )


def _check_some_trial_succeeded(study: optuna.Study) -> None:
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed and not finished(trials):
        reason = failed[-1].user_attrs.get(FAIL_REASON, "no reason recorded")
        raise NoTrialSucceeded(f"all {len(failed)} trials failed; the last one (trial {failed[-1].number}): {reason}")
