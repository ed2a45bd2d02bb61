"""``stacey-compare``: train one task with Stacey and with baseline optimizers, several seeds each.

For every optimizer and seed the task is built after ``seed_everything(seed)``, and with
``make(seed=seed)`` when its ``make`` takes a ``seed`` (the built-in tasks do), so every optimizer
sees the same initial weights and the same data order for a given seed. Outputs, under ``output_dir``:

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

import argparse
import csv
import inspect
import json
import logging
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
import yaml

from stacey_lightning.baselines import STACEY, BASELINES, baseline_options, use_baseline
from stacey_lightning.config import StaceyConfig
from stacey_lightning.tasks import BUILTIN_TASKS, resolve_task

__all__ = ["compare", "compare_main", "StepClock", "RunResult", "Comparison"]

DEFAULT_OPTIMIZERS = (STACEY, "adamw", "sgd", "lion")
# Tags the tasks log the per-step training loss under: "train_loss" when logged on_step only,
# "train_loss_step" when logged both per step and per epoch.
_LOSS_TAGS = ("train_loss", "train_loss_step")


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

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.device = trainer.strategy.root_device

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._synchronize()
        self.steps.append(trainer.global_step)
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
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


@dataclass
class RunResult:
    """One training run: an optimizer with one seed."""

    optimizer: str
    seed: int
    run_dir: str
    final_metric: float
    seconds_per_step: float
    optimizer_state_bytes: int
    peak_cuda_bytes: int | None  # None when the run was not on CUDA
    options: dict[str, Any]  # what the optimizer was built with (Stacey: the resolved config)
    clock_steps: np.ndarray = field(repr=False)
    clock_elapsed: np.ndarray = field(repr=False)


@dataclass
class Comparison:
    """What ``compare`` produced: every run and the files written."""

    monitor: str
    runs: list[RunResult]
    figure: str
    markdown: str
    csv: str
    runs_csv: str


def compare(
    task: str | Callable,
    optimizers: Sequence[str] = DEFAULT_OPTIMIZERS,
    seeds: int | Sequence[int] = 3,
    max_epochs: int = 10,
    config: Any = None,
    monitor: str | None = None,
    output_dir: str | os.PathLike = "stacey-compare",
    trainer_kwargs: Mapping[str, Any] | None = None,
    optimizer_options: Mapping[str, Mapping[str, Any]] | None = None,
    task_options: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Comparison:
    """Train ``task`` with every optimizer and seed, and write TensorBoard runs, a figure and tables.

    Args:
        task: a built-in task name, "package.module:callable", or a task callable
            ``make(trial=None) -> (LightningModule, LightningDataModule)``; the module uses StaceyMixin.
        optimizers: "stacey", baseline names ("adamw", "sgd", "lion") and optimizer class paths
            ("torch.optim.RAdam"). Default: stacey, adamw, sgd, lion.
        seeds: how many seeds (0, 1, ..., seeds - 1) or the seeds themselves. Default 3.
        max_epochs: epochs per run. Default 10.
        config: Stacey's config: a dict, a ``StaceyConfig`` or a YAML path such as the tuner's
            best.yaml. None keeps the config the task's module was built with.
        monitor: the logged metric to compare; default the task's own (val_loss for custom tasks).
        output_dir: where everything is written. Runs already there under the same names are replaced.
        trainer_kwargs: extra ``lightning.Trainer`` arguments (accelerator, devices, limit_train_batches,
            ...). The logger is set by compare; ``log_every_n_steps`` defaults to 1 for full curves.
        optimizer_options: per optimizer name, options that override its defaults, for example
            ``{"adamw": {"lr": 1e-3}, "stacey": {"p": 3.0}}`` ("stacey" entries update ``config``).
        task_options: keyword arguments for the task's ``make``, for example ``{"foreach": True}``
            for digits (Stacey without torch.compile).
        progress: called with one line after every run (the CLI prints them). Default: silent.

    Returns:
        A ``Comparison`` with every ``RunResult`` and the paths of the files written.
    """
    resolved = resolve_task(task)
    monitor = monitor or resolved.monitor
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(seed) for seed in seeds]
    if not seed_list:
        raise ValueError("seeds: need at least one seed")
    if not optimizers:
        raise ValueError("optimizers: need at least one optimizer")
    if len(set(optimizers)) != len(optimizers):
        raise ValueError(f"optimizers: {list(optimizers)} names an optimizer twice")
    trainer_kwargs = dict(trainer_kwargs or {})
    if "logger" in trainer_kwargs:
        raise ValueError("trainer_kwargs: 'logger' is set by compare (TensorBoard runs under output_dir); remove it")
    optimizer_options = dict(optimizer_options or {})
    unused = set(optimizer_options) - set(optimizers)
    if unused:
        raise ValueError(f"optimizer_options: {sorted(unused)} are not among the optimizers {list(optimizers)}")
    # Resolve every option before the first run, so a typo fails in seconds, not after an hour of training.
    options = {name: _stacey_options(config, optimizer_options.get(name)) if name == STACEY
               else baseline_options(name, optimizer_options.get(name)) for name in optimizers}

    output_dir = os.fspath(output_dir)
    tensorboard_dir = os.path.join(output_dir, "tensorboard")
    runs = []
    total = len(optimizers) * len(seed_list)
    for seed in seed_list:
        for name in optimizers:
            run = _train(resolved.make, dict(task_options or {}), name, options[name], seed, max_epochs, monitor,
                         tensorboard_dir, trainer_kwargs)
            runs.append(run)
            if progress:
                progress(f"[{len(runs)}/{total}] {name} seed {seed}: {monitor} {run.final_metric:.4g}, "
                         f"{run.seconds_per_step * 1e3:.3g} ms/step")

    curves = {name: [_read_curves(run, monitor) for run in runs if run.optimizer == name] for name in optimizers}
    figure = os.path.join(output_dir, "compare.png")
    _plot(curves, monitor, figure)
    markdown, table_csv, runs_csv = (os.path.join(output_dir, name) for name in ("compare.md", "compare.csv",
                                                                                "runs.csv"))
    _write_tables(runs, optimizers, monitor, markdown, table_csv, runs_csv)
    return Comparison(monitor, runs, figure, markdown, table_csv, runs_csv)


def _stacey_options(config: Any, overrides: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What to hand to ``set_stacey_config``, validated now: the whole config with the overrides applied,
    only the overrides (on top of the module's own config) when there is no config, or None."""
    if config is None:
        if not overrides:
            return None
        StaceyConfig.from_source(overrides)
        return dict(overrides)
    return StaceyConfig.from_source(dict(overrides or {}), defaults=StaceyConfig.from_source(config)).to_dict()


def _train(make: Callable, task_options: dict[str, Any], name: str, options: dict[str, Any] | None, seed: int,
           max_epochs: int, monitor: str, tensorboard_dir: str, trainer_kwargs: dict[str, Any]) -> RunResult:
    from lightning.pytorch.loggers import TensorBoardLogger

    run_dir = os.path.join(tensorboard_dir, name, f"seed-{seed}")
    # A previous run under the same name would mix its events into this run's curves.
    shutil.rmtree(run_dir, ignore_errors=True)
    pl.seed_everything(seed, workers=True, verbose=False)
    if "seed" in inspect.signature(make).parameters:
        task_options["seed"] = seed
    module, datamodule = make(**task_options)
    if name == STACEY:
        if not hasattr(module, "set_stacey_config"):
            raise ValueError(f"the task's module {type(module).__name__} has no set_stacey_config: make it "
                             "inherit stacey_lightning.StaceyMixin")
        if options is not None:
            module.set_stacey_config(options)
        options = module.stacey_config().to_dict()
    else:
        options = use_baseline(module, name, options)

    clock = StepClock()
    # default_hp_metric=False: no placeholder hp_metric = -1; the real final metric is logged at the end.
    logger = TensorBoardLogger(tensorboard_dir, name=name, version=f"seed-{seed}", default_hp_metric=False)
    arguments = {"max_epochs": max_epochs, "log_every_n_steps": 1, "enable_checkpointing": False,
                 "enable_progress_bar": False, "enable_model_summary": False, **trainer_kwargs}
    arguments["callbacks"] = [*trainer_kwargs.get("callbacks", []), clock]
    trainer = pl.Trainer(logger=logger, **arguments)
    on_cuda = trainer.strategy.root_device.type == "cuda"
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)
    trainer.fit(module, datamodule=datamodule)

    if monitor not in trainer.callback_metrics:
        raise ValueError(f"monitor {monitor!r} was not logged by the task (logged: "
                         f"{', '.join(sorted(trainer.callback_metrics)) or 'nothing'}); pass --monitor NAME")
    final_metric = float(trainer.callback_metrics[monitor])
    logger.log_hyperparams({"optimizer": name, "seed": seed, **options}, metrics={f"hp/{monitor}": final_metric},
                           step=trainer.global_step)
    logger.finalize("success")
    return RunResult(
        optimizer=name, seed=seed, run_dir=logger.log_dir, final_metric=final_metric,
        seconds_per_step=clock.seconds_per_step(), optimizer_state_bytes=_state_bytes(trainer.optimizers[0]),
        peak_cuda_bytes=torch.cuda.max_memory_allocated(trainer.strategy.root_device) if on_cuda else None,
        options=options, clock_steps=np.asarray(clock.steps), clock_elapsed=clock.elapsed())


def _state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(value.numel() * value.element_size() for state in optimizer.state.values()
               for value in state.values() if isinstance(value, torch.Tensor))


@dataclass
class _Curves:
    """One run's curves, read back from its TensorBoard events, with elapsed seconds at each point."""

    loss_steps: np.ndarray
    loss: np.ndarray
    metric_steps: np.ndarray
    metric: np.ndarray
    loss_seconds: np.ndarray
    metric_seconds: np.ndarray


def _read_curves(run: RunResult, monitor: str) -> _Curves:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(run.run_dir, size_guidance={SCALARS: 0})  # 0: keep every point
    events.Reload()
    tags = events.Tags()["scalars"]
    loss_tag = next((tag for tag in _LOSS_TAGS if tag in tags), None)
    if loss_tag is None:
        raise ValueError(f"run {run.run_dir!r} has no per-step training loss ({' or '.join(_LOSS_TAGS)}); "
                         f"its scalars: {', '.join(sorted(tags))}. The task must self.log('train_loss', ...)")

    def series(tag: str) -> tuple[np.ndarray, np.ndarray]:
        points = events.Scalars(tag)
        return np.array([point.step for point in points]), np.array([point.value for point in points])

    loss_steps, loss = series(loss_tag)
    metric_steps, metric = series(monitor)
    # Interpolation: with gradient accumulation several batches share one step.
    def seconds(steps: np.ndarray) -> np.ndarray:
        return np.interp(steps, run.clock_steps, run.clock_elapsed) if run.clock_steps.size else steps * 0.0

    return _Curves(loss_steps, loss, metric_steps, metric, seconds(loss_steps), seconds(metric_steps))


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (fewer at the start): per-batch losses are too noisy to read."""
    sums = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _aligned(steps: list[np.ndarray], values: list[np.ndarray], seconds: list[np.ndarray]):
    """Mean and std over seeds at the steps every seed has, with the mean elapsed seconds there."""
    common = steps[0]
    for other in steps[1:]:
        common = np.intersect1d(common, other)

    def stack(series: list[np.ndarray]) -> np.ndarray:
        return np.stack([value[np.searchsorted(step, common)] for step, value in zip(steps, series)])

    stacked = stack(values)
    return common, stack(seconds).mean(axis=0), stacked.mean(axis=0), stacked.std(axis=0)


def _plot(curves: dict[str, list[_Curves]], monitor: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    longest = max(run.loss.size for runs in curves.values() for run in runs)
    window = max(1, longest // 50)
    figure, axes = plt.subplots(2, 2, figsize=(10, 7), squeeze=False)
    for index, (name, runs) in enumerate(curves.items()):
        color = plt.get_cmap("tab10")(index % 10)
        rows = (
            ([run.loss_steps for run in runs], [_moving_average(run.loss, window) for run in runs],
             [run.loss_seconds for run in runs]),
            ([run.metric_steps for run in runs], [run.metric for run in runs], [run.metric_seconds for run in runs]),
        )
        for row, (steps, values, seconds) in enumerate(rows):
            common, mean_seconds, mean, std = _aligned(steps, values, seconds)
            marker = "o" if common.size < 30 else None  # per-epoch metrics are few points: show them
            for column, x in enumerate((common, mean_seconds)):
                axis = axes[row][column]
                axis.plot(x, mean, color=color, marker=marker, markersize=3, label=f"{name} ({len(runs)} seeds)")
                axis.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    loss_title = "training loss" + (f" (moving average over {window} steps)" if window > 1 else "")
    for column, x_label in enumerate(("step", "training wall-clock time (s)")):
        axes[0][column].set_title(loss_title, fontsize=10)
        axes[1][column].set_title(monitor, fontsize=10)
        for row in range(2):
            axes[row][column].set_xlabel(x_label)
            axes[row][column].grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.suptitle("mean ± one standard deviation across seeds", fontsize=10)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _write_tables(runs: list[RunResult], optimizers: Sequence[str], monitor: str, markdown: str, table_csv: str, runs_csv: str) -> None:
    on_cuda = any(run.peak_cuda_bytes is not None for run in runs)
    mib = 2.0 ** 20
    rows = []
    for name in optimizers:
        mine = [run for run in runs if run.optimizer == name]
        finals = [run.final_metric for run in mine]
        rows.append({
            "optimizer": name,
            "seeds": len(mine),
            f"final_{monitor}_mean": statistics.fmean(finals),
            # Sample std; undefined for one seed, left empty rather than shown as a misleading 0.
            f"final_{monitor}_std": statistics.stdev(finals) if len(finals) > 1 else None,
            "seconds_per_step": statistics.fmean(run.seconds_per_step for run in mine),
            "optimizer_state_bytes": max(run.optimizer_state_bytes for run in mine),
            "peak_cuda_bytes": max((run.peak_cuda_bytes or 0 for run in mine), default=0) if on_cuda else None,
            "options": json.dumps(mine[0].options),
        })
    _write_csv(table_csv, rows)
    _write_csv(runs_csv, [{"optimizer": run.optimizer, "seed": run.seed, f"final_{monitor}": run.final_metric,
                           "seconds_per_step": run.seconds_per_step,
                           "optimizer_state_bytes": run.optimizer_state_bytes,
                           "peak_cuda_bytes": run.peak_cuda_bytes, "run_dir": run.run_dir} for run in runs])

    header = ["optimizer", "seeds", f"final {monitor} (mean ± std)", "time per step (ms)", "optimizer state (MiB)"]
    if on_cuda:
        header.append("peak CUDA memory (MiB)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        std = row[f"final_{monitor}_std"]
        final = f"{row[f'final_{monitor}_mean']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
        cells = [row["optimizer"], str(row["seeds"]), final, f"{row['seconds_per_step'] * 1e3:.3g}",
                 f"{row['optimizer_state_bytes'] / mib:.3g}"]
        if on_cuda:
            cells.append(f"{row['peak_cuda_bytes'] / mib:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Time per step: median over the steps after the first (forward, backward and optimizer step; "
        "no data loading or validation), averaged over seeds.",
        "Optimizer state: bytes of tensors in the optimizer's state after training."
        + (" Peak CUDA memory: torch.cuda.max_memory_allocated over the run." if on_cuda else
           " Runs were on CPU, where no peak-memory counter isolates one run; the state size is what differs "
           "between optimizers."),
        "",
        "Options:",
        "",
    ]
    lines += [f"- {row['optimizer']}: `{row['options']}`" for row in rows]
    with open(markdown, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def _write_csv(path: str, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)


def _parse_setting(text: str, optimizers: Sequence[str]) -> tuple[str, str, Any]:
    """"adamw.lr=1e-3" -> ("adamw", "lr", 0.001); the value is read as YAML (numbers, lists, inf)."""
    target, equals, value = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not (equals and dot and name and key):
        raise ValueError(f"--set {text!r}: expected OPTIMIZER.KEY=VALUE, for example adamw.lr=1e-3")
    if name not in optimizers:
        raise ValueError(f"--set {text!r}: {name!r} is not among --optimizers {','.join(optimizers)}")
    parsed = yaml.safe_load(value)
    # YAML 1.1 reads "1e-3" (no dot) as a string; a number is what an optimizer option means.
    if isinstance(parsed, str):
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return name, key, parsed


def compare_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``stacey-compare`` (and ``python -m stacey_lightning compare``)."""
    # Imported here: cli imports this module for its subcommands. Same argument syntax as stacey-tune.
    from stacey_lightning.cli import _devices, _task_option

    parser = argparse.ArgumentParser(
        prog="stacey-compare",
        description="Train a task with Stacey and baseline optimizers over several seeds; write TensorBoard "
                    "runs, a figure and tables.")
    parser.add_argument("--task", required=True,
                        help=f"built-in task ({', '.join(BUILTIN_TASKS)}) or package.module:callable")
    parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                        help="comma-separated: stacey, " + ", ".join(BASELINES) + " or optimizer class paths "
                             "such as torch.optim.RAdam (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (default: %(default)s)")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs per run (default: %(default)s)")
    parser.add_argument("--config", help="Stacey config YAML, for example the tuner's best.yaml")
    parser.add_argument("--monitor", help="logged metric to compare (default: the task's)")
    parser.add_argument("--output", default="stacey-compare", help="output directory (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTIMIZER.KEY=VALUE",
                        help="override an option, repeatable: adamw.lr=1e-3, stacey.p=3, sgd.nesterov=true")
    parser.add_argument("--accelerator", help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument("--devices", type=_devices,
                        help="Lightning devices for each run (one device: compare times single-device steps)")
    parser.add_argument("--task-option", type=_task_option, action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the task's make(), value read as YAML; repeatable")
    arguments = parser.parse_args(argv)

    optimizers = [name.strip() for name in arguments.optimizers.split(",") if name.strip()]
    trainer_kwargs = {key: getattr(arguments, key) for key in ("accelerator", "devices")
                      if getattr(arguments, key) is not None}
    try:
        optimizer_options: dict[str, dict[str, Any]] = {}
        for text in arguments.set:
            name, key, value = _parse_setting(text, optimizers)
            optimizer_options.setdefault(name, {})[key] = value
        # Lightning announces the hardware for every Trainer; one line per run is enough here.
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        result = compare(arguments.task, optimizers, arguments.seeds, arguments.max_epochs, arguments.config,
                         arguments.monitor, arguments.output, trainer_kwargs, optimizer_options,
                         dict(arguments.task_option), progress=print)
    except ValueError as error:
        print(f"stacey-compare: error: {error}", file=sys.stderr)
        return 2
    with open(result.markdown, encoding="utf-8") as stream:
        print("\n" + stream.read())
    print(f"figure: {result.figure}\ntables: {result.markdown}, {result.csv}, {result.runs_csv}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(arguments.output, 'tensorboard')}")
    return 0
