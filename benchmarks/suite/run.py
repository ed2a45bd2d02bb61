"""The suite's driver: every optimizer tuned on every workload at equal budgets, its winner retrained on seeds.

Per workload, budget (K full runs' worth of epochs) and optimizer, one call of
``stacey_lightning.compare.compare(..., budget=K * epochs)``, what ``stacey-compare --tune-budget`` and
``benchmarks/quality.py --budgets`` do: Stacey tuned on the workload's search-space preset, a baseline on its
``baselines`` preset entry, each study with the same sampler, pruner, epochs per trial and study seed, then
its winner trained on seeds 0 .. seeds - 1 (the same initial weights and batch order per seed for every
optimizer). ``stacey-find`` is the geometry finder instead (``stacey_lightning.finder.find_for_task``, its
own budget of 1.5 runs whatever K is; as ``benchmarks/finder.py`` runs it), its pick trained on the same seeds.

Resuming: each (workload, budget, optimizer) works in its own folder under the workdir (smoke runs and each
study seed apart) and, once done, writes ``result.json`` there; a run started again with the same workdir
skips what has a result for as many seeds and resumes the studies of the rest from their storage
(``studies.db``); with another number of seeds, the finished studies' winners are retrained. A failure (an
optimizer that cannot train a workload, a study whose every trial diverged) is reported, not stored: the
next run tries it again.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.suite.registry import Workload
from stacey_lightning.baselines import BASELINES, STACEY

__all__ = [
    "FINDER", "Outcome", "default_optimizers", "run_settings", "measure_workload", "time_default_run",
    "load_average", "SMOKE_TRAINER", "RESULT", "train_config",
]  # fmt: skip

FINDER = "stacey-find"
RESULT = "result.json"
# A smoke run: the workload's smoke options, 1 epoch of 4 batches (the finder needs a few steps per run).
SMOKE_TRAINER = {"limit_train_batches": 4, "limit_val_batches": 1}


@dataclass(frozen=True)
class Outcome:
    """One optimizer on one workload at one budget: the final metric per seed (seeds 0, 1, ...), the
    configuration it was retrained at, how its tuning went, or the error that stopped it."""

    finals: list[float]
    config: dict[str, Any]
    tuning: str
    error: str | None = None


def default_optimizers() -> list[str]:
    """Stacey, the geometry finder and every built-in baseline (``baselines.BASELINES``)."""
    return [STACEY, FINDER, *BASELINES]


def run_settings(workload: Workload, smoke: bool) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """``workload``'s make() options, epochs per run and Trainer arguments; with ``smoke``, its smoke options
    and one epoch of ``SMOKE_TRAINER`` batches."""
    if smoke:
        return dict(workload.smoke_options), 1, dict(SMOKE_TRAINER)
    return {}, workload.epochs, {}


def train_config(workload: Workload, config: Any, seeds: Sequence[int], **settings: Any) -> list[float]:
    """The final metric of Stacey at ``config`` (a mapping or a config file) trained once on each of ``seeds``,
    in a temporary folder, at the workload's epochs and metric unless ``settings`` (``compare``'s keywords) say
    otherwise: the untuned runs of the suite's experiment scripts (anchor_steps, ns_forms, spectral_step)."""
    from stacey_lightning.compare import compare

    settings = dict(max_epochs=workload.epochs, monitor=workload.monitor, direction=workload.direction) | settings
    with tempfile.TemporaryDirectory() as folder:
        result = compare(workload.task, ["stacey"], list(seeds), config=config, output_dir=folder, **settings)
    return [run.final_metric for run in result.runs]


def measure_workload(
    workload: Workload,
    optimizers: Sequence[str],
    budgets: Sequence[int],
    *,
    seeds: int,
    workdir: Path,
    smoke: bool = False,
    tune_seed: int = 0,
    progress: Callable[[str], None] = print,
) -> dict[int, dict[str, Outcome]]:
    """Every optimizer of ``optimizers`` on ``workload`` at every budget of ``budgets`` (full runs):
    ``{budget: {optimizer: Outcome}}``. Works in ``workdir / workload.name``; see the module docstring."""
    # Smoke runs and each study seed keep their own studies: a study resumed with other settings would mix them.
    root = workdir / f"{'smoke' if smoke else 'full'}-study-seed-{tune_seed}" / workload.name
    results: dict[int, dict[str, Outcome]] = {}
    for budget in budgets:
        results[budget] = {}
        for optimizer in optimizers:
            # The finder spends its own budget, the same at every K: one result serves them all.
            folder = root / (FINDER if optimizer == FINDER else f"budget-{budget}/{optimizer}")
            say = partial(_say, progress, f"{workload.name} {optimizer} K={budget}")
            measure = partial(_measure, workload, optimizer, budget, seeds, folder, smoke, tune_seed, say)
            results[budget][optimizer] = _stored(folder, seeds, measure, say)
    return results


def _say(progress: Callable[[str], None], prefix: str, line: str) -> None:
    progress(f"{prefix}: {line}")


def _stored(folder: Path, seeds: int, measure: Callable[[], Outcome], say: Callable[[str], None]) -> Outcome:
    """The outcome stored in ``folder`` for ``seeds`` seeds, else ``measure()``'s, stored unless it failed."""
    path = folder / RESULT
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored["seeds"] == seeds:
            say(f"done before ({path})")
            return Outcome(**stored["outcome"])
    try:
        outcome = measure()
    except Exception as error:  # one optimizer that cannot train a workload must not stop the suite
        say(f"failed: {type(error).__name__}: {error}")
        return Outcome(finals=[], config={}, tuning="", error=f"{type(error).__name__}: {error}".splitlines()[0])
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"seeds": seeds, "outcome": asdict(outcome)}, indent=1))
    return outcome


def _measure(
    workload: Workload, optimizer: str, budget: int, seeds: int, folder: Path, smoke: bool, tune_seed: int, say
) -> Outcome:
    from stacey_lightning.compare import compare

    options, epochs, trainer_kwargs = run_settings(workload, smoke)
    common = dict(
        max_epochs=epochs, monitor=workload.monitor, direction=workload.direction, trainer_kwargs=trainer_kwargs,
        task_options=options, progress=say,
    )  # fmt: skip
    if optimizer == FINDER:
        return _find_then_train(workload, seeds, folder, say, common)
    comparison = compare(
        workload.make(), [optimizer], seeds, output_dir=folder, budget=budget * epochs, space=workload.space,
        seed=tune_seed, **common,
    )  # fmt: skip
    tuned = comparison.tuned[optimizer]
    return Outcome(
        finals=[run.final_metric for run in comparison.runs],
        config=_plain(tuned.options),
        tuning=f"{tuned.complete} / {tuned.pruned} / {tuned.failed} trials, {tuned.epochs} epochs",
    )


def _find_then_train(workload: Workload, seeds: int, folder: Path, say, common: dict[str, Any]) -> Outcome:
    from stacey_lightning.compare import compare
    from stacey_lightning.finder import find_for_task
    from stacey_lightning.tuner.outputs import quiet_libraries

    finder = {key: common[key] for key in ("max_epochs", "monitor", "direction", "task_options")}
    # The finder keeps the model's starting weights in a file under the Trainer's root folder: the workdir, not
    # the current folder, so that a killed run leaves nothing behind there.
    finder["trainer_kwargs"] = {**common["trainer_kwargs"], "default_root_dir": os.fspath(folder)}
    with quiet_libraries():
        found, written = find_for_task(workload.make(), output_dir=folder / "find", progress=say, **finder)
    comparison = compare(workload.make(), [STACEY], seeds, output_dir=folder / "runs", config=written["best.yaml"],
                         **common)  # fmt: skip
    return Outcome(
        finals=[run.final_metric for run in comparison.runs],
        config=_plain(found.config.to_dict()),
        tuning=f"finder: {found.steps_used} of {found.budget} steps",
    )


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as ``result.json`` keeps them (tuples as lists; p = inf as Python's json writes it)."""
    return json.loads(json.dumps(options, default=str))


def time_default_run(workload: Workload, smoke: bool = False) -> tuple[float, float, float]:
    """One run of ``workload`` with Stacey's default config (build, fit, validation; no logger, seed 0):
    its wall-clock seconds, the CPU seconds this process spent on it, and the final metric it reached. With
    one torch thread the CPU seconds are what the run takes on an idle core; on a shared machine the
    wall-clock time also counts the waits for one."""
    from stacey_lightning import run
    from stacey_lightning.tuner.outputs import quiet_libraries

    options, epochs, trainer_kwargs = run_settings(workload, smoke)
    started, started_cpu = time.perf_counter(), time.process_time()
    with quiet_libraries():
        module, datamodule = run.build(workload.make(), seed=0, options=options)
        run.use_optimizer(module, run.optimizer_choice(STACEY))
        trainer = run.make_trainer(max_epochs=epochs, logger=False, callbacks=[], trainer_kwargs=trainer_kwargs)
        run.fit(trainer, module, datamodule, 0)
    final = run.final_metric(trainer, workload.monitor)
    if final is None:
        raise ValueError(f"workload {workload.name!r} did not log its metric {workload.monitor!r}")
    return time.perf_counter() - started, time.process_time() - started_cpu, final


def load_average() -> float:
    """The 1-minute load average (NaN where the system has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
