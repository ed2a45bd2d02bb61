"""``stacey-compare``: train one task with Stacey and with baseline optimizers, several seeds each.

Every run is built and trained by ``stacey_lightning.run``, as a tuning trial is: ``seed_everything(seed)``,
``make(seed=seed)`` when ``make`` takes a seed (the built-in tasks do), so every optimizer sees the
same initial weights and the same data order for a given seed. A config from the tuner's
``best.yaml`` brings the task's own sampled parameters (its ``task`` section), which are handed to
``make`` as a fixed trial: the best trial's model is rebuilt. Outputs, under ``output_dir``:

- ``tensorboard/<optimizer>/seed-<k>``: one TensorBoard run each, with the task's logged curves and
  HParams (the optimizer's options, the seed and the final monitored metric as ``hp/<monitor>``, the
  name the tuner's trial runs use);
- ``compare.png``: mean and spread (± one standard deviation) across seeds of the training loss and
  the monitored metric, against step and against wall-clock time;
- ``compare.md`` and ``compare.csv``: per optimizer the final metric (mean ± sample std over seeds),
  time per step and memory; ``runs.csv``: the same per run.

Timing: a step is one training batch (forward, backward, optimizer step), timed by ``StepClock``;
data loading and validation are not counted. The first step of every run is left out of the time
per step and of the wall-clock axis, because it pays one-time costs (Stacey's torch.compile, lazy
optimizer state, CUDA autotuning) that would otherwise favour whichever optimizer runs later.
Memory: the bytes held in the optimizer's state (exact, on every device) and, on CUDA, the peak
memory allocated during the run (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from typing_extensions import override

from stacey_lightning import run
from stacey_lightning.baselines import DEFAULT_OPTIMIZERS, STACEY
from stacey_lightning.compare.outputs import plot, read_curves, write_tables
from stacey_lightning.compare.results import Comparison, RunResult, Tuned
from stacey_lightning.compare.tuned import tune_each
from stacey_lightning.lightning.choice import OptimizerChoice
from stacey_lightning.lightning.config import StaceyConfig, task_params
from stacey_lightning.study.spec import study_spec
from stacey_lightning.tasks import resolve_task

__all__ = ["compare", "StepClock", "RunPlan", "RunResult", "Comparison"]


class StepClock(pl.Callback):
    """Times every training batch: forward, backward and optimizer step, in seconds.

    On CUDA it synchronises at both ends of a batch so that the time covers the kernels, not only
    their launch. ``steps[i]`` is the step batch i belongs to, counted from 0 as the logger counts
    the points it logs during that batch; ``durations[i]`` is the batch's duration.
    """

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.durations: list[float] = []
        self.device = torch.device("cpu")
        self._started = 0.0

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.device = trainer.strategy.root_device

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._synchronize()
        self.steps.append(trainer.global_step)
        self._started = time.perf_counter()

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._synchronize()
        self.durations.append(time.perf_counter() - self._started)

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds_per_step(self) -> float:
        """Median duration of a step after the first one (the first pays one-time costs)."""
        timed = self.durations[1:] or self.durations
        return statistics.median(timed) if timed else math.nan

    def elapsed(self) -> np.ndarray:
        """Wall-clock seconds of training after each step, the first step counted as zero."""
        durations = np.asarray(self.durations, dtype=float)
        if durations.size:
            durations[0] = 0.0
        return np.cumsum(durations)


@dataclass(frozen=True)
class RunPlan:
    """What every run of a comparison shares: the task, its budget and metric, where runs are logged."""

    make: Callable
    task_options: Mapping[str, Any]
    max_epochs: int
    monitor: str
    tensorboard_dir: str
    trainer_kwargs: Mapping[str, Any]
    geometry: bool


def compare(
    task: str | Callable,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    seeds: int | Sequence[int] = 3,
    *,
    config: Any = None,
    optimizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    output_dir: str | os.PathLike = "stacey-compare",
    progress: Callable[[str], None] | None = None,
    baseline_space: Any = None,
    **settings: Any,
) -> Comparison:
    """Train ``task`` with every optimizer and seed, and write TensorBoard runs, a figure and tables.

    Args:
        task: a built-in task name, "package.module:callable", a LightningCLI config file (.yaml), or a
            task callable ``make(trial=None, seed=0) -> (LightningModule, LightningDataModule)``; a module
            without StaceyMixin is given it at run time (``lightning.adopt``).
        optimizers: "stacey", baseline names ("adamw", "sgd", "lion", "muon", "schedulefree") and optimizer
            class paths ("torch.optim.RAdam"). Default: stacey, adamw, sgd, lion. Every one is built by the
            module's ``configure_optimizers`` from the same parameter groups by kind.
        seeds: how many seeds (0, 1, ..., seeds - 1) or the seeds themselves. Default 3.
        config: Stacey's config: a dict, a ``StaceyConfig`` or a YAML path such as the tuner's
            best.yaml, whose ``task`` section (the task's own sampled parameters) goes to ``make``.
            None keeps the config the task's module was built with.
        optimizer_options: per optimizer name, options that override its defaults, for example
            ``{"adamw": {"lr": 1e-3}, "stacey": {"p": 3.0}}`` ("stacey" entries update ``config``).
        output_dir: where everything is written. Runs already there under the same names are replaced.
        progress: called with one line after every run (the CLI prints them). Default: silent.
        baseline_space: with tuning, the baselines' search space (default: each one's ``baselines`` preset
            entry); Stacey's is the ``space`` setting.
        settings: the study settings of ``study_spec`` (one spec, checked there, before the first run).
            ``max_epochs``, ``monitor``, ``direction``, ``trainer_kwargs`` (``log_every_n_steps`` defaults
            to 1 for full curves; the logger is compare's), ``task_options`` and ``geometry`` apply to every
            run. With ``n_trials`` or ``budget`` (epochs), every optimizer is first tuned by such a study
            (``tuned.tune_each``: the same ``sampler``, ``pruner``, ``seed``, ``anchors``, ``confirm``),
            kept in ``storage`` (default ``sqlite:///<output_dir>/studies.db``), then compared at its best.

    Returns:
        A ``Comparison`` with every ``RunResult`` and the paths of the files written.

    Raises:
        ValueError: a bad argument, setting, option or config, before the first run.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(seed) for seed in seeds]
    if not seed_list:
        raise ValueError("seeds: need at least one seed")
    if not optimizers:
        raise ValueError("optimizers: need at least one optimizer")
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"optimizers: {list(optimizers)} names an optimizer twice")
    if "logger" in (settings.get("trainer_kwargs") or {}):
        raise ValueError("trainer_kwargs: 'logger' is set by compare (TensorBoard runs under output_dir); remove it")
    tuning = settings.get("n_trials") is not None or settings.get("budget") is not None
    if tuning and config is not None:
        raise ValueError("config: give Stacey's config or tune it (n_trials, budget), not both")
    storage = settings.pop("storage", None) or f"sqlite:///{Path(output_dir).resolve()}/studies.db"
    spec = study_spec(task, output_dir=Path(output_dir) / "tuning", storage=storage, **settings)
    resolved = resolve_task(task)
    optimizer_options = dict(optimizer_options or {})
    unused = set(optimizer_options) - set(optimizers)
    if unused:
        raise ValueError(f"optimizer_options: {sorted(unused)} are not among the optimizers {list(optimizers)}")
    # Resolve every option before the first run, so a typo fails in seconds, not after an hour of training.
    choices = {
        name: _choice(name, config if name == STACEY else None, optimizer_options.get(name)) for name in optimizers
    }
    fixed_task = _task_trial(task_params(config) if config is not None and not isinstance(config, StaceyConfig) else {})
    fixed_tasks = dict.fromkeys(optimizers, fixed_task)
    tuned: dict[str, Tuned] = {}
    if tuning:
        tuned = tune_each(spec, optimizers, space=spec.space, baseline_space=baseline_space)
        for name, result in tuned.items():
            choices[name] = _choice(name, result.options, optimizer_options.get(name))
            fixed_tasks[name] = _task_trial(result.task_params)

    output_dir = os.fspath(output_dir)
    monitor = spec.monitor
    plan = RunPlan(
        make=resolved.make,
        task_options=spec.task_options,
        max_epochs=spec.max_epochs,
        monitor=monitor,
        tensorboard_dir=os.path.join(output_dir, "tensorboard"),
        trainer_kwargs={"log_every_n_steps": 1, **spec.trainer_kwargs},
        geometry=spec.geometry,
    )
    runs = []
    total = len(optimizers) * len(seed_list)
    for seed in seed_list:
        for name in optimizers:
            result = _train(plan, choices[name], fixed_tasks[name], seed)
            runs.append(result)
            if progress:
                progress(
                    f"[{len(runs)}/{total}] {name} seed {seed}: {monitor} {result.final_metric:.4g}, "
                    f"{result.seconds_per_step * 1e3:.3g} ms/step"
                )

    curves = {
        name: [read_curves(r.run_dir, r.clock_steps, r.clock_elapsed, monitor) for r in runs if r.optimizer == name]
        for name in optimizers
    }
    comparison = Comparison(
        monitor=monitor,
        runs=runs,
        figure=os.path.join(output_dir, "compare.png"),
        markdown=os.path.join(output_dir, "compare.md"),
        csv=os.path.join(output_dir, "compare.csv"),
        runs_csv=os.path.join(output_dir, "runs.csv"),
        tuned=tuned,
    )
    plot(curves, monitor).savefig(comparison.figure, dpi=100)
    write_tables(comparison, optimizers)
    return comparison


def _choice(name: str, config: Any, overrides: Mapping[str, Any] | None) -> OptimizerChoice:
    """The optimizer choice of ``name``, validated now. Stacey: ``config`` (a whole config: a mapping, a
    StaceyConfig or a YAML path) with the overrides applied; without a config, only the overrides (on
    top of the module's own config), or None. A baseline: ``config`` (its tuned options, or None) and
    the overrides over its defaults."""
    if name != STACEY:
        return run.optimizer_choice(name, {**(config or {}), **(overrides or {})})
    if config is None:
        return run.optimizer_choice(STACEY, dict(overrides) if overrides else None)
    return run.optimizer_choice(
        STACEY, StaceyConfig.from_source(dict(overrides or {}), defaults=StaceyConfig.from_source(config))
    )


def _task_trial(params: Mapping[str, Any]) -> Any:
    """A fixed trial replaying the task's own sampled parameters (a best.yaml's ``task`` section), or None."""
    if not params:
        return None
    import optuna

    return optuna.trial.FixedTrial(dict(params))


def _train(plan: RunPlan, choice: OptimizerChoice, fixed_task: Any, seed: int) -> RunResult:
    name = choice.name
    run_dir = os.path.join(plan.tensorboard_dir, name, f"seed-{seed}")
    # A previous run under the same name would mix its events into this run's curves.
    shutil.rmtree(run_dir, ignore_errors=True)
    module, datamodule = run.build(plan.make, seed=seed, options=plan.task_options, trial=fixed_task)
    options = run.use_optimizer(module, choice)
    clock = StepClock()
    callbacks: list = [clock]
    if plan.geometry and choice.is_stacey:
        from stacey_lightning.lightning.monitor import StaceyMonitor

        callbacks.append(StaceyMonitor(every_n_steps=10))
    logger = run.make_logger(plan.tensorboard_dir, name, f"seed-{seed}")
    trainer = run.make_trainer(
        max_epochs=plan.max_epochs, logger=logger, callbacks=callbacks, trainer_kwargs=plan.trainer_kwargs
    )
    on_cuda = trainer.strategy.root_device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)
    run.fit(trainer, module, datamodule, seed)

    final_metric = run.final_metric(trainer, plan.monitor)
    if final_metric is None:
        raise ValueError(
            f"monitor {plan.monitor!r} was not logged by the task (logged: "
            f"{', '.join(sorted(trainer.callback_metrics)) or 'nothing'}); pass --monitor NAME"
        )
    run.log_final_hparams(
        logger,
        {"optimizer": name, "seed": seed, **options},
        {f"hp/{plan.monitor}": final_metric},
        step=trainer.global_step,
    )
    return RunResult(
        optimizer=name,
        seed=seed,
        run_dir=logger.log_dir,
        final_metric=final_metric,
        seconds_per_step=clock.seconds_per_step(),
        optimizer_state_bytes=_state_bytes(trainer.optimizers[0]),
        peak_cuda_bytes=torch.cuda.max_memory_allocated(trainer.strategy.root_device) if on_cuda else None,
        options=options,
        clock_steps=np.asarray(clock.steps),
        clock_elapsed=clock.elapsed(),
    )


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )
