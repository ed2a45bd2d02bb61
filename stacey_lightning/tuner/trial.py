"""One trial: sample its optimizer config, train the task once, and tell the study the outcome."""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from stacey_lightning import run
from stacey_lightning.attributes import (
    CONFIG,
    CONFIRMS,
    FAIL_REASON,
    GRADIENT_SCALE,
    MODEL_KINDS,
    OPTIMIZER_OPTIONS,
    STOP_REASON,
    TASK_PARAMS,
    TRACEBACK,
    TRIAL_SEED,
)
from stacey_lightning.execution.ddp import RankZero
from stacey_lightning.execution.deaths import requeue
from stacey_lightning.execution.optuna_private import storage_of, trial_id
from stacey_lightning.execution.outage import StorageUnavailable
from stacey_lightning.execution.storage import Heartbeat
from stacey_lightning.lightning.config import read_number
from stacey_lightning.search.calibration import measure, study_gradient_scale
from stacey_lightning.study.confirm import is_confirmation
from stacey_lightning.study.spec import StudySpec
from stacey_lightning.tuner.best_checkpoint import FinalCheckpoint, trial_checkpoint
from stacey_lightning.tuner.pruning import StaceyPruning

__all__ = ["Outcome", "run_trial", "train_as_follower", "options_attribute", "trial_options", "flat_config"]

GEOMETRY_EVERY_N_STEPS = 10  # StaceyMonitor's interval under --geometry: short trials still get curves


@dataclass
class Outcome:
    """How a trial ended: its state, final value (COMPLETE only) and, if it did not complete, why."""

    state: TrialState
    value: float | None = None
    reason: str | None = None


def options_attribute(optimizer: str) -> str:
    """The trial user attribute holding the optimizer's config: CONFIG for Stacey, else OPTIMIZER_OPTIONS."""
    return CONFIG if optimizer == "stacey" else OPTIMIZER_OPTIONS


def trial_options(trial: Any) -> dict[str, Any]:
    """The optimizer config a trial (frozen or live) trained with: Stacey's config or a baseline's options."""
    return trial.user_attrs.get(CONFIG, trial.user_attrs.get(OPTIMIZER_OPTIONS, {}))


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config as one level of keys: betas -> beta1, beta2; kinds -> kinds.<kind>.<key>; no schedule."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key == "betas":
            flat["beta1"], flat["beta2"] = value
        elif key == "kinds":
            for kind, overrides in value.items():
                flat.update({f"kinds.{kind}.{name}": item for name, item in overrides.items()})
        elif key != "schedule":
            flat[key] = value
    return flat


def _callbacks(spec: StudySpec, trial: Any, number: int, confirmation: bool) -> list:
    """Trial ``number``'s callbacks (``trial`` is None on a follower rank): pruning, its final checkpoint for
    ``best_checkpoint.settle``, and the geometry monitor if asked for. A confirmation run (confirm.py) is
    never pruned, and keeps no model: the study's model is the one its candidate trained."""
    callbacks: list = [StaceyPruning(trial, spec.monitor, prune=not confirmation)]
    if not confirmation:
        callbacks.append(FinalCheckpoint(trial_checkpoint(spec.output_dir, spec.study_name, number)))
    if spec.geometry and spec.optimizer == "stacey":
        from stacey_lightning.lightning.monitor import StaceyMonitor

        callbacks.append(StaceyMonitor(every_n_steps=GEOMETRY_EVERY_N_STEPS))
    return callbacks


def _logger(spec: StudySpec, number: int) -> Any:
    return run.make_logger(str(spec.output_dir / "tensorboard"), spec.study_name, f"trial-{number}")


def run_trial(
    spec: StudySpec, study: optuna.Study, trial: optuna.Trial, make: Callable, rank_zero: RankZero
) -> Outcome:
    """Train ``trial`` and tell ``study`` how it ended. Ctrl-C fails the trial, re-queues its parameters
    and raises KeyboardInterrupt again."""
    logger = None
    try:
        # Optuna (5.1) has no public accessor for a study's storage or a trial's storage id, and runs
        # heartbeats only inside Study.optimize, which ask-and-tell workers do not use.
        with Heartbeat(storage_of(study), trial_id(trial)):
            confirmation = is_confirmation(trial)
            seed = trial.user_attrs.get(TRIAL_SEED, spec.seed)
            # A confirmation run's enqueued parameters are recorded by sampling them, but it trains with its
            # candidate's own config, not one resolved again with today's gradient scale.
            options = spec.space.sample_config(trial, gradient_scale=study_gradient_scale(study))
            if confirmation:
                options = trial_options(study.get_trials(deepcopy=False)[trial.user_attrs[CONFIRMS]])
            trial.set_user_attr(options_attribute(spec.optimizer), options)
            module, datamodule = run.build(make, seed=seed, options=spec.task_options, trial=trial)
            own = {name: value for name, value in trial.params.items() if name not in spec.space.param_names()}
            if own:
                trial.set_user_attr(TASK_PARAMS, own)
            run.use_optimizer(module, run.optimizer_choice(spec.optimizer, options))
            logger = _logger(spec, trial.number)
            trainer = run.make_trainer(
                max_epochs=spec.max_epochs,
                logger=logger,
                callbacks=_callbacks(spec, trial, trial.number, confirmation),
                trainer_kwargs=spec.trainer_kwargs,
            )
            rank_zero.announce(trial, trainer)
            run.fit(trainer, module, datamodule, seed)
            value = run.final_metric(trainer, spec.monitor)
            if spec.optimizer == "stacey" and trainer.optimizers:
                scale = measure(trainer.optimizers[0])  # for later trials' lr (calibration.py)
                if scale is not None:
                    trial.set_user_attr(GRADIENT_SCALE, scale)
                # The kinds the model has, where its groups are by kind (StaceyMixin's): a ladder's coordinates.
                kinds = {group.get("kind") for group in trainer.optimizers[0].param_groups if group["params"]} - {None}
                if kinds:
                    trial.set_user_attr(MODEL_KINDS, sorted(kinds))
            # From the storage: under ddp_spawn rank 0 ran in another process, and Trial.user_attrs
            # is this process's cached copy. Optuna's only public re-read is Study.get_trials, which
            # loads every trial of the study; the storage reads this one.
            stop_reason = storage_of(study).get_trial_user_attrs(trial_id(trial)).get(STOP_REASON)
    except KeyboardInterrupt:
        _fail(study, trial, "interrupted (Ctrl-C)")
        requeue(study, trial)
        raise
    except StorageUnavailable:
        # Not the task's failure, and the trial cannot be failed in a storage out of reach: it stays
        # RUNNING until the same command, run again, fails and re-queues it (a dead worker's trial).
        raise
    except Exception as error:
        reason = _last_line(error)
        trial.set_user_attr(TRACEBACK, traceback.format_exc())
        _fail(study, trial, reason)
        _record(logger, spec, trial, TrialState.FAIL, None)
        return Outcome(TrialState.FAIL, reason=reason)
    if stop_reason is not None:
        _record(logger, spec, trial, TrialState.PRUNED, value)
        study.tell(trial, state=TrialState.PRUNED)
        return Outcome(TrialState.PRUNED, value, stop_reason)
    if value is None or not math.isfinite(value):
        reason = (
            f"monitor {spec.monitor!r} was never logged (logged: "
            f"{', '.join(sorted(trainer.callback_metrics)) or 'nothing'}); pass the metric the task logs"
            if value is None
            else f"final {spec.monitor} is {value}"
        )
        _fail(study, trial, reason)
        _record(logger, spec, trial, TrialState.FAIL, None)
        return Outcome(TrialState.FAIL, reason=reason)
    _record(logger, spec, trial, TrialState.COMPLETE, value)
    study.tell(trial, value)
    return Outcome(TrialState.COMPLETE, value)


def train_as_follower(spec: StudySpec, make: Callable, frozen: optuna.trial.FrozenTrial) -> None:
    """On a non-zero rank of a plain-DDP job: join rank 0's run of ``frozen`` with the same parameters."""
    fixed = optuna.trial.FixedTrial(frozen.params, frozen.number)
    seed = frozen.user_attrs.get(TRIAL_SEED, spec.seed)
    module, datamodule = run.build(make, seed=seed, options=spec.task_options, trial=fixed)
    run.use_optimizer(module, run.optimizer_choice(spec.optimizer, trial_options(frozen)))
    trainer = run.make_trainer(
        max_epochs=spec.max_epochs,
        logger=_logger(spec, frozen.number),
        callbacks=_callbacks(spec, None, frozen.number, is_confirmation(frozen)),
        trainer_kwargs=spec.trainer_kwargs,
    )
    run.fit(trainer, module, datamodule, seed)


def _last_line(error: BaseException) -> str:
    """The exception as one line: its type and the last non-empty line of its message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1]}" if lines else type(error).__name__


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(FAIL_REASON, reason)
    study.tell(trial, state=TrialState.FAIL)


def _hparam(value: Any) -> Any:
    """A value TensorBoard's HParams can hold: numbers (p = "inf" as a float), strings, booleans."""
    if isinstance(value, str):
        try:
            return read_number(value, "hparam")
        except ValueError:
            return value
    return value


def _record(logger: Any, spec: StudySpec, trial: optuna.Trial, state: TrialState, value: float | None) -> None:
    """The trial's HParams in its TensorBoard run: every sampled value, the config it resolved to (every
    p, lr, ...), state, final metric."""
    hparams: dict[str, Any] = dict(trial.params)
    config = flat_config(trial_options(trial))
    hparams.update({key: _hparam(value) for key, value in config.items() if value is not None})
    hparams["state"] = state.name
    metrics = {"pruned": float(state == TrialState.PRUNED)}
    if value is not None:
        metrics[f"hp/{spec.monitor}"] = value
    run.log_final_hparams(logger, hparams, metrics)
