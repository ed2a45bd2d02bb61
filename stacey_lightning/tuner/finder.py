"""``find_geometry``: Stacey's p, lr and tau for a model in about 1.5 training runs, in the spirit of
Lightning's ``Tuner.lr_find``: short runs from the same initial weights and batches, read off the loss.

What it rests on (benchmarks/results/geometry.md and finder.md, measured on a byte-level transformer and
an MLP; nothing here is fitted to one of them):

- The step transfers across p as a coordinate step: lr * c99 ** (1/(p-1)) is about Lion's best lr for
  every p from 2.5 to inf, c99 the 99th percentile of |momentum| (``calibration.measure``). So one
  ladder of coordinate steps serves every candidate p; the range tests confirm it (their cliffs fell
  within 1.5x of each other in step on both models).
- The best lr sits just below a cliff (1.5-2x above it costs a lot or diverges), which a range test, a
  run whose lr rises every step until the loss turns, finds without a full run per lr.
- c99 falls as training goes on (10x over the first quarter of a run on the transformer), so at finite
  p a constant lr makes ever smaller steps. The lr for a step is therefore computed with the c99 that
  a constant-lr run ends with, not the one at the range test's cliff: on the transformer that made the
  cliff's step at the late c99 the best lr of every p (p 3, 4, 8: 0.2-0.28, 0.08, 0.014).
- How far below the cliff the best step lies depends on the task, and no range test says it: the
  transformer, far from converged in its 265 steps, wants the cliff itself; the MLP on digits, which
  fits its training set within a few epochs, reaches its best validation accuracy 10-30x below it.
  (That is the horizon rule, "the best lr falls as the run grows", seen from a short test.) So the
  confirmation runs measure it: p = inf (where lr is the step, no c99 involved) at ``FACTORS`` (1.5
  and 20) below its cliff, judged by the task's validation metric.
- Finite p in [4, 8] at tau ~ 0 beat AdamW and Lion on the language models, p = inf is Lion, p = 3
  was the paper's pick for a language model: the default candidates are 3, 4, 8 and inf. p = 2 (SGD,
  whose step curvature sets) may be added; the ladder is wide enough to hold its cliff.
- tau acts as a pull of x towards its initial weights (alpha = 0 gives the gain any useful alpha
  gives): tau = 1/T (``tau_horizon`` 1, one e-fold over the run) helped at p = 4 on every seed and
  hurt nowhere, so the pick carries ``tau_horizon: 1`` and ``alpha: 0``.

The procedure, within ``RUNS`` (1.5) runs' worth of optimizer steps, every step counted:
1. a range test per candidate p (p = inf first) over the coordinate steps ``STEP_RANGE``, each stopped
   once its loss turns, together about ``RANGE_SHARE`` of the budget; each gives the cliff's step and
   the c99 there;
2. confirmation runs at constant lr sharing the rest equally: p = inf at the cliff / 1.5 and the cliff
   / 20 (the better factor is the task's), then ``FIRST_P`` and the next candidate at that factor;
   one whose training loss climbs back is unstable;
3. the pick: the best confirmation by the validation metric (stable runs first; without a monitor,
   by the final training loss), its step turned into lr with the c99 its own run ended with.
"""

from __future__ import annotations

import copy
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from stacey_lightning import run
from stacey_lightning.lightning.config import StaceyConfig, tau_for_horizon
from stacey_lightning.tuner.anchors import LION_STEP
from stacey_lightning.tuner.calibration import measure
from stacey_lightning.tuner.search_space import DEFAULT_GRADIENT_SCALE, coordinate_scale

__all__ = [
    "find_geometry",
    "find_for_task",
    "find_cliff",
    "smooth",
    "FinderResult",
    "RangeTest",
    "Confirmation",
    "P_CANDIDATES",
    "STEP_RANGE",
    "RUNS",
    "FACTORS",
]

P_CANDIDATES = (3.0, 4.0, 8.0, math.inf)
# Coordinate steps of the range tests: from far below Lion's good lrs (1e-4 for large models, 3e-3 for
# small ones) to far above the cliffs measured (6e-3 to 1e-2 on the small transformer).
STEP_RANGE = (1e-5, 1e-1)
RUNS = 1.5  # the finder's budget, in training runs of max_epochs
RANGE_SHARE = 0.3  # of the budget, split among the candidates' range tests (each stops at its cliff)
CONFIRMED = 2  # candidate p confirmed at the chosen factor, besides the one that chose it
FIRST_P = 4.0  # the first of them: the middle of the p that won on the language models
# How far below its cliff the confirmations try the step: how far a task wants it differs (the module's
# docstring), so it is measured, not assumed: just below the cliff, or a good way below it.
FACTORS = (1.5, 20.0)
TAU_HORIZON = 1.0  # tau = 1/T: a pull towards the initial weights over one run
# A range test stops once its running loss has given back this share of what it gained from its start.
STOP_SHARE = 0.5
_REAL_GAIN = 0.1  # ... a gain of at least this share of the starting loss, so that early noise stops nothing
_RUNNING = 0.7  # the running mean's weight on the past, for the stop rule only (the cliff uses ``smooth``)
_UNSTABLE_RISE = 0.1  # a confirmation ending this share of its gain above its lowest loss is unstable


def smooth(losses: Sequence[float], half_width: int) -> list[float]:
    """The centred moving mean of ``losses`` over ±``half_width`` steps (fewer at the ends). Centred, so
    that the minimum does not lag behind the loss, as an exponential mean's would on a rising lr."""
    smoothed = []
    for index in range(len(losses)):
        window = losses[max(0, index - half_width) : index + half_width + 1]
        smoothed.append(sum(window) / len(window))
    return smoothed


def find_cliff(losses: Sequence[float]) -> tuple[int | None, list[float]]:
    """(index of the cliff, smoothed losses) of a range test's training losses, one per step at a rising lr.

    The cliff is the step of the lowest smoothed loss, provided the loss rose after it: by
    ``_UNSTABLE_RISE`` of the gain from the start, or to a non-finite value. Steps after the first
    non-finite loss are dropped. None when the loss was still falling at the end of the ladder, or
    never fell.
    """
    finite = []
    for loss in losses:
        if not math.isfinite(loss):
            break
        finite.append(float(loss))
    diverged = len(finite) < len(losses)
    if len(finite) < 3:
        return None, finite
    smoothed = smooth(finite, max(1, len(finite) // 30))
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    gain = smoothed[0] - smoothed[lowest]
    if lowest == 0 or gain <= 0:
        return None, smoothed
    rose = max(smoothed[lowest:]) - smoothed[lowest] > _UNSTABLE_RISE * gain
    return (lowest if rose or diverged else None), smoothed


@dataclass
class RangeTest:
    """One candidate p's range test: the lr and training loss of each step taken, and what was read off."""

    p: float
    lrs: list[float]
    losses: list[float]
    smoothed: list[float] = field(default_factory=list)
    cliff: int | None = None  # index into lrs
    gradient_scale: float | None = None  # c99 measured at the edge
    edge_step: float | None = None  # the coordinate step at the cliff (or the ladder's top, without one)
    pick_step: float | None = None  # edge_step / the factor the confirmations chose
    pick_lr: float | None = None  # the lr of pick_step at the latest c99

    @property
    def cliff_lr(self) -> float | None:
        return None if self.cliff is None else self.lrs[self.cliff]

    @property
    def lowest(self) -> float:
        """The lowest smoothed loss the test reached (inf without any)."""
        return min(self.smoothed, default=math.inf)


@dataclass
class Confirmation:
    """A candidate trained at constant lr: its losses, final training loss (mean of the last tenth), whether
    it stayed down, and its score: the monitored validation metric, or without a monitor the final loss."""

    p: float
    lr: float
    step: float  # the coordinate step: the range test's edge_step / factor
    factor: float
    losses: list[float]
    final: float
    stable: bool
    score: float
    gradient_scale: float | None  # c99 at the run's end


@dataclass
class FinderResult:
    """What ``find_geometry`` found and how: the config to use, every test, the steps spent."""

    config: StaceyConfig
    gradient_scale: float | None
    range_tests: list[RangeTest]
    confirmations: list[Confirmation]
    steps_used: int
    budget: int
    steps_per_epoch: int
    max_epochs: int
    monitor: str | None = None
    runs: float = RUNS

    @property
    def p(self) -> float:
        return self.config.p

    @property
    def lr(self) -> float:
        return self.config.lr

    def table(self) -> str:
        """Markdown: the range tests (per p: the cliff and the pick), the confirmation runs, the pick and the
        steps spent."""
        lines = [
            "| p | steps | cliff lr | cliff step | c99 | lowest loss | pick lr |",
            "|---|---|---|---|---|---|---|",
        ]
        for test in self.range_tests:
            cells = [_p_text(test.p), str(len(test.lrs)), _number(test.cliff_lr), _number(test.edge_step)]
            cells += [_number(test.gradient_scale), f"{test.lowest:.4g}", _number(test.pick_lr)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.confirmations:
            score = self.monitor or "final loss"
            lines += [
                "",
                f"| p | lr | step | cliff / | steps | final training loss | {score} |",
                "|---|---|---|---|---|---|---|",
            ]
            for confirmation in self.confirmations:
                final = f"{confirmation.final:.4g}" + ("" if confirmation.stable else " (unstable)")
                cells = [_p_text(confirmation.p), f"{confirmation.lr:.3g}", f"{confirmation.step:.3g}"]
                cells += [f"{confirmation.factor:g}", str(len(confirmation.losses)), final, f"{confirmation.score:.4g}"]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append(
            f"\npick: p {_p_text(self.p)}, lr {self.lr:.3g}, tau_horizon {self.config.tau_horizon:g}, alpha 0; "
            f"{self.steps_used} optimizer steps of a budget of {self.budget} "
            f"({self.runs:g} runs of {self.max_epochs} epochs x {self.steps_per_epoch} steps)"
        )
        return "\n".join(lines)

    def write(self, output_dir: str | os.PathLike, header: str = "") -> dict[str, Path]:
        """Write ``best.yaml`` (the config, as the tuner writes it: ``set_stacey_config`` and ``stacey-compare
        --config`` load it) and ``finder.png`` (the range tests and the picks) into ``output_dir``."""
        import yaml

        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        best = output / "best.yaml"
        comment = (
            f"# geometry finder{header}: p = {_p_text(self.p)}, lr = {self.lr:.4g}; "
            f"{self.steps_used} of {self.budget} optimizer steps\n"
        )
        best.write_text(comment + yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        figure = output / "finder.png"
        self.plot(figure)
        return {"best.yaml": best, "finder.png": figure}

    def plot(self, path: str | os.PathLike | None = None) -> Any:
        """lr_find's figure for every candidate p: the smoothed loss against the coordinate step, the cliff
        and the pick marked (dotted per p, solid for the chosen p). Saved to ``path`` if given; returns the figure."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(7, 4.5))
        for test in self.range_tests:
            if not test.smoothed:
                continue
            # Each test's lr as a coordinate step with its own c99: the cliffs of all p line up there.
            to_step = coordinate_scale(test.gradient_scale or 1.0, test.p)
            steps = [lr * to_step for lr in test.lrs[: len(test.smoothed)]]
            (line,) = axes.plot(steps, test.smoothed, label=f"p = {_p_text(test.p)}")
            if test.cliff is not None:
                axes.plot(steps[test.cliff], test.smoothed[test.cliff], "v", color=line.get_color())
            if test.pick_step is not None:
                chosen = test.p == self.p
                axes.axvline(
                    test.pick_step,
                    color="black" if chosen else line.get_color(),
                    linestyle="-" if chosen else ":",
                    linewidth=1.5 if chosen else 1,
                    label=f"pick: p = {_p_text(self.p)}, lr = {self.lr:.3g}" if chosen else None,
                )
        axes.set_xscale("log")
        axes.set_xlabel("coordinate step lr * c99^(1/(p-1))  (Lion's lr at p = inf)")
        axes.set_ylabel("training loss (smoothed)")
        axes.set_title("Stacey geometry finder: range tests (▼ cliff, dotted: pick per p)")
        finite = [value for test in self.range_tests for value in test.smoothed if math.isfinite(value)]
        if finite:
            top = max(test.smoothed[0] for test in self.range_tests if test.smoothed)
            axes.set_ylim(min(finite) - 0.05 * (top - min(finite)), top + 0.2 * (top - min(finite)))
        axes.legend(fontsize=8)
        figure.tight_layout()
        if path is not None:
            figure.savefig(path, dpi=100)
            plt.close(figure)
        return figure


def _p_text(p: float) -> str:
    return "inf" if p == math.inf else f"{p:g}"


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


def find_geometry(
    model: Any,
    datamodule: Any = None,
    *,
    max_epochs: int,
    p_candidates: Sequence[float] = P_CANDIDATES,
    seed: int = 0,
    trainer_kwargs: Mapping[str, Any] | None = None,
    runs: float = RUNS,
    base_config: Any = None,
    monitor: str | None = None,
    direction: str = "minimize",
    progress: Any = None,
) -> FinderResult:
    """Suggest Stacey's p, lr and tau for ``model`` trained ``max_epochs`` epochs on ``datamodule``.

    Every short run starts from ``model``'s weights as given and the same batches (``seed``), and the
    model is left with those weights. The optimizer steps spent are counted and stay within ``runs``
    (1.5) runs of ``max_epochs`` epochs, the range tests' overshoot past a cliff included.

    Args:
        model: a LightningModule; without ``StaceyMixin`` it is given it (``lightning.adopt``).
        datamodule: its LightningDataModule (None if the module brings its own dataloaders).
        max_epochs: the epochs of the run the pick is for; the pick's tau and budget follow from it.
        p_candidates: the geometries to test, each > 1 (``math.inf`` allowed). Default 3, 4, 8, inf.
        seed: ``seed_everything`` before each run (the same batch order for every run).
        trainer_kwargs: extra Trainer arguments (accelerator, devices, limit_train_batches, ...).
        runs: the budget, in runs of ``max_epochs``. Default 1.5.
        base_config: Stacey config whose other keys (betas, weight decay, eps, kinds; the schedule, which
            the pick keeps and the finder's runs replace by their own lr) the runs and the pick keep;
            default the module's own.
        monitor, direction: the validation metric that judges the confirmation runs ("val_acc",
            "maximize"); None judges them by their final training loss.
        progress: called with one line per run (e.g. ``print``); None for silence.

    Returns:
        A ``FinderResult``: ``.config`` (a StaceyConfig), ``.table()``, ``.plot()``, ``.write(dir)``.

    Raises:
        ValueError: a bad argument, before any training.
    """
    candidates = _check(max_epochs, p_candidates, runs)
    if not hasattr(model, "set_optimizer_choice"):
        from stacey_lightning.lightning.adopt import adopt

        adopt(model)
    base = StaceyConfig.from_source(base_config) if base_config is not None else model.stacey_config()
    if monitor is not None and direction not in ("minimize", "maximize"):
        raise ValueError(f"direction: must be 'minimize' or 'maximize' with a monitor, got {direction!r}")
    finder = _Finder(
        model, datamodule, max_epochs=max_epochs, seed=seed, trainer_kwargs=dict(trainer_kwargs or {}), runs=runs,
        base=base, progress=progress, monitor=monitor, direction=direction,
    )  # fmt: skip
    return finder.find(candidates)


def find_for_task(
    task: Any,
    *,
    max_epochs: int | None = None,
    task_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    monitor: str | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    p_candidates: Sequence[float] = P_CANDIDATES,
    runs: float = RUNS,
    output_dir: str | os.PathLike = "stacey-find",
    progress: Any = None,
    direction: str | None = None,
) -> tuple[FinderResult, dict[str, Path]]:
    """``find_geometry`` on a task as ``stacey-tune`` names it (a built-in name, "module:callable", a
    LightningCLI config or a callable), built with ``seed`` and ``task_options``, the confirmations
    judged by the task's monitor (or ``monitor``, in ``direction``, default the task's); writes
    ``best.yaml`` and ``finder.png`` to ``output_dir``. Returns the result and the paths written. Every
    argument is checked first (ValueError, one line)."""
    from stacey_lightning.tasks import check_task_options, resolve_task
    from stacey_lightning.tuner.spec import check_trainer_kwargs

    resolved = resolve_task(task)
    if max_epochs is None:  # the task's own (a LightningCLI file's trainer.max_epochs), else 10
        max_epochs = resolved.max_epochs or 10
    _check(max_epochs, p_candidates, runs)
    options = dict(task_options or {})
    check_task_options(resolved, options)
    # A LightningCLI file's callbacks (checkpointing, early stopping) belong to its fit, not to the
    # finder's short runs, which checkpoint nothing and validate only where they must.
    own = {key: value for key, value in resolved.trainer_kwargs.items() if key != "callbacks"}
    kwargs = {**own, **(trainer_kwargs or {})}
    check_trainer_kwargs(kwargs)
    module, datamodule = run.build(resolved.make, seed=seed, options=options)
    result = find_geometry(
        module,
        datamodule,
        max_epochs=max_epochs,
        p_candidates=p_candidates,
        seed=seed,
        trainer_kwargs=kwargs,
        runs=runs,
        monitor=monitor or resolved.monitor,
        direction=direction or resolved.direction,
        progress=progress,
    )
    return result, result.write(output_dir, header=f" on task {resolved.name!r}, {max_epochs} epochs")


def _check(max_epochs: Any, p_candidates: Sequence[float], runs: float) -> list[float]:
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs: must be an integer >= 1, got {max_epochs!r}")
    if not (runs > 0 and math.isfinite(runs)):
        raise ValueError(f"runs: must be a positive number of training runs, got {runs!r}")
    candidates = []
    for p in p_candidates:
        p = float(p)
        if not p > 1:
            raise ValueError(f"p_candidates: every p must be > 1 (math.inf allowed), got {p}")
        if p not in candidates:
            candidates.append(p)
    if not candidates:
        raise ValueError("p_candidates: give at least one p")
    # The range test at p = inf measures c99, which turns the other candidates' coordinate steps into lr.
    return sorted(candidates, key=lambda p: (p != math.inf, p))


class _Finder:
    """The procedure of the module's docstring, counting every optimizer step it takes."""

    def __init__(
        self, model, datamodule, *, max_epochs, seed, trainer_kwargs, runs, base, progress, monitor, direction
    ):
        self.model = model
        self.datamodule = datamodule
        self.max_epochs = max_epochs
        self.seed = seed
        self.trainer_kwargs = trainer_kwargs
        self.runs = runs
        self.base = base
        self.progress = progress or (lambda line: None)
        self.monitor = monitor
        self.direction = direction
        self.initial = copy.deepcopy(model.state_dict())
        self.steps_per_epoch: int | None = None  # read by the first run's recorder
        self.used = 0
        self.scale: float | None = None  # the latest c99 measured at the end of a constant-lr run

    @property
    def budget(self) -> int:
        return max(1, math.floor(self.runs * self.max_epochs * (self.steps_per_epoch or 1)))

    def find(self, candidates: list[float]) -> FinderResult:
        tests = [self._range_test(p, len(candidates)) for p in candidates]
        usable = [t for t in tests if t.edge_step is not None]
        if not usable:
            # Nothing to read off (a budget of a few steps, or a loss that no step of the ladder lowered):
            # say so, and suggest the Lion-like anchor every study starts from.
            warnings.warn(
                f"stacey-find: no range test lowered the training loss in its {max(len(t.lrs) for t in tests)} "
                f"steps; suggesting the Lion-like point (p = inf, lr {LION_STEP:g}): raise --max-epochs, or check "
                "the task's loss and data",
                stacklevel=3,
            )
            self.model.load_state_dict(self.initial)
            total = self.max_epochs * (self.steps_per_epoch or 1)
            config = self._config(math.inf, LION_STEP, steps=total, pick=True)
            return self._result(config, tests, [])
        confirmations = self._confirm(usable)
        if confirmations:
            chosen = min(confirmations, key=self._rank)
            p, step = chosen.p, chosen.step / (1 if chosen.stable else 2)
            factor = chosen.factor
            self.scale = chosen.gradient_scale or self.scale
        else:  # no budget left to confirm: the lowest range test, at the more careful factor
            test = min(usable, key=lambda t: t.lowest)
            p, factor = test.p, FACTORS[-1]
            step = test.edge_step / factor
        for test in usable:
            test.pick_step = step if test.p == p else test.edge_step / factor
            test.pick_lr = self._lr(test, test.pick_step)
        lr = self._lr(next(t for t in usable if t.p == p), step)
        self.model.load_state_dict(self.initial)
        config = self._config(p, lr, steps=self.max_epochs * (self.steps_per_epoch or 1), pick=True)
        return self._result(config, tests, confirmations)

    def _result(self, config: StaceyConfig, tests: list[RangeTest], confirmations: list[Confirmation]) -> FinderResult:
        return FinderResult(
            config=config, gradient_scale=self.scale, range_tests=tests, confirmations=confirmations,
            steps_used=self.used, budget=self.budget, steps_per_epoch=self.steps_per_epoch or 0,
            max_epochs=self.max_epochs, monitor=self.monitor, runs=self.runs,
        )  # fmt: skip

    def _lr(self, test: RangeTest, step: float) -> float:
        """The lr that gives coordinate step ``step`` at ``test``'s p, with c99 measured at the end of the best
        constant-lr run so far (else the range test's own, at its cliff). c99 falls as training goes on (the
        small transformer's by 5x over a run), so at finite p a constant lr's step shrinks: the late measure
        is nearer to what most of a full run sees, and on that model it made the cliff's step the best lr's
        step for every p (benchmarks/results/finder.md)."""
        return step / coordinate_scale(self.scale or test.gradient_scale or 1.0, test.p)

    def _rank(self, confirmation: Confirmation) -> tuple:
        """Stable runs first, then by the monitored metric (its direction), else by the final training loss."""
        score = confirmation.score
        if not math.isfinite(score):
            return (2, 0.0)
        return (0 if confirmation.stable else 1, -score if self.direction == "maximize" else score)

    def _confirm(self, tests: list[RangeTest]) -> list[Confirmation]:
        """How far below its cliff this task wants its step, then which p: p = inf (else ``FIRST_P``, else
        the lowest range test) at each of ``FACTORS``, the bold one first (at p = inf the lr is the step
        itself, so no c99 blurs the comparison, and its run measures the late c99 the others use); then
        ``FIRST_P`` and the other candidates, lowest range test first, at the better factor, ``CONFIRMED``
        of them in all. Every run gets an equal share of what the range tests left."""
        first = next((t for t in tests if t.p == math.inf), None) or next((t for t in tests if t.p == FIRST_P), None)
        first = first or min(tests, key=lambda t: t.lowest)
        others = sorted((t for t in tests if t is not first), key=lambda t: (t.p != FIRST_P, t.lowest))
        plan: list[tuple[RangeTest, float | None]] = [(first, factor) for factor in FACTORS]
        plan += [(test, None) for test in others[:CONFIRMED]]
        confirmations: list[Confirmation] = []
        factor = FACTORS[-1]
        for index, (test, planned) in enumerate(plan):
            steps = (self.budget - self.used) // (len(plan) - index)
            if steps < 2:
                break
            confirmations.append(self._confirmation(test, planned or factor, steps))
            self.scale = min(confirmations, key=self._rank).gradient_scale or self.scale
            if index == len(FACTORS) - 1:
                factor = min(confirmations, key=self._rank).factor
        return confirmations

    def _confirmation(self, test: RangeTest, factor: float, steps: int) -> Confirmation:
        step = test.edge_step / factor
        lr = self._lr(test, step)
        record = self._train(self._config(test.p, lr, steps=steps), lambda _: (steps, lambda k: lr), measure_end=True)
        losses = record.losses
        finite = [value for value in losses if math.isfinite(value)]
        tail = losses[-max(1, len(losses) // 10) :]
        final = sum(tail) / len(tail) if tail and all(math.isfinite(v) for v in tail) else math.inf
        smoothed = smooth(finite, max(1, len(finite) // 30)) if finite else []
        lowest = min(smoothed, default=math.inf)
        gain = (smoothed[0] - lowest) if smoothed else 0.0
        stable = math.isfinite(final) and final - lowest <= _UNSTABLE_RISE * max(gain, 1e-12)
        score = self._validate() if self.monitor is not None and math.isfinite(final) else final
        confirmation = Confirmation(
            p=test.p, lr=lr, step=step, factor=factor, losses=losses, final=final, stable=stable, score=score,
            gradient_scale=record.scales[-1][1] if record.scales else None,
        )  # fmt: skip
        self.progress(
            f"[stacey-find] confirmation p = {_p_text(test.p)}, lr {lr:.3g} (step {step:.3g} = cliff / {factor:g}): "
            f"{len(losses)} steps, final training loss {final:.4g}" + ("" if stable else " (unstable)")
            + ("" if self.monitor is None else f", {self.monitor} = {score:.4g}")
        )  # fmt: skip
        return confirmation

    def _validate(self) -> float:
        """The monitored metric of the model as it is now: one validation pass, no optimizer step."""
        trainer = run.make_trainer(max_epochs=1, logger=False, callbacks=[], trainer_kwargs=self.trainer_kwargs)
        results = trainer.validate(self.model, datamodule=self.datamodule, verbose=False)
        value = (results[0] if results else {}).get(self.monitor, trainer.callback_metrics.get(self.monitor))
        if value is None:
            raise ValueError(f"monitor {self.monitor!r} was never logged in validation: pass the metric the task logs")
        return float(value)

    def _config(self, p: float, lr: float, *, steps: int | None = None, pick: bool = False) -> StaceyConfig:
        """The base config at (p, lr), alpha 0: tau 0 (a range test), or tau_horizon 1 over a run of
        ``steps`` (tau = 1/steps, written out too, as the pick's ``tau``); a constant lr but in the pick."""
        values = {**self.base.to_dict(), "p": p, "lr": lr, "alpha": 0.0, "tau": 0.0, "tau_horizon": None}
        if not pick:
            values["schedule"] = {"name": "constant"}  # the recorder sets each step's lr
        if steps is not None:
            values.update(tau=tau_for_horizon(TAU_HORIZON, steps), tau_horizon=TAU_HORIZON)
        return StaceyConfig.from_source(values)

    def _range_test(self, p: float, candidates: int) -> RangeTest:
        low, high = STEP_RANGE
        # The ladder is in coordinate steps; c99 turns it into lr. Before any is measured, the default
        # scale of the search spaces; the test measures its own as it goes, which places its cliff.
        to_lr = 1.0 / coordinate_scale(self.scale or DEFAULT_GRADIENT_SCALE, p)

        def plan(steps_per_epoch: int) -> tuple[int, Any]:
            self.steps_per_epoch = self.steps_per_epoch or steps_per_epoch
            length = min(max(3, math.floor(RANGE_SHARE * self.budget / candidates)), self.budget - self.used)
            return length, lambda k: low * to_lr * (high / low) ** (k / max(1, length - 1))

        if self.steps_per_epoch is not None and self.budget - self.used < 2:
            return RangeTest(p, [], [])
        record = self._train(self._config(p, low * to_lr), plan, measure_every=True, stop_at_cliff=True)
        cliff, smoothed = find_cliff(record.losses)
        test = RangeTest(p, record.lrs, record.losses, smoothed, cliff)
        if smoothed and test.lowest < smoothed[0]:
            # The edge: the cliff, or without one the ladder's top, the most that is known to be safe.
            at = cliff if cliff is not None else len(smoothed) - 1
            test.gradient_scale = max((s for s in record.scales if s[0] <= at), default=(0, None))[1]
            test.edge_step = record.lrs[at] * coordinate_scale(test.gradient_scale or 1.0, p)
        self.progress(
            f"[stacey-find] range test p = {_p_text(p)}: {len(record.lrs)} steps, cliff at lr {_number(test.cliff_lr)}"
            f", step {_number(test.edge_step)}, c99 {_number(test.gradient_scale)}"
        )
        return test

    def _train(self, config: StaceyConfig, plan, *, measure_every=False, measure_end=False, stop_at_cliff=False):
        """One short run from the initial weights; ``plan(steps_per_epoch) -> (steps, lr_of_step)``."""
        self.model.load_state_dict(self.initial)
        run.use_optimizer(self.model, run.optimizer_choice("stacey", config))
        recorder = _Recorder(plan, measure_every=measure_every, measure_end=measure_end, stop_at_cliff=stop_at_cliff)
        # Enough epochs for any run within the budget; the recorder stops the run at its planned length.
        epochs = math.ceil(self.runs * self.max_epochs) + 1
        kwargs = {**self.trainer_kwargs, "limit_val_batches": 0, "enable_checkpointing": False}
        trainer = run.make_trainer(max_epochs=epochs, logger=False, callbacks=[recorder], trainer_kwargs=kwargs)
        run.fit(trainer, self.model, self.datamodule, self.seed)
        self.used += trainer.global_step
        return recorder


class _Recorder(Callback):
    """Sets each step's lr (every param group keeps its ratio to the config's lr), records the training
    loss, measures c99 now and then, and stops the run at its planned length or, in a range test, once
    the loss has turned: not finite, or its running mean back above where it started, or (after a real
    gain) above the lowest by ``STOP_SHARE`` of that gain."""

    def __init__(self, plan, *, measure_every=False, measure_end=False, stop_at_cliff=False) -> None:
        self.plan = plan
        self.measure_every = measure_every  # c99 every twentieth of the run
        self.measure_end = measure_end  # c99 at the run's last step
        self.stop_at_cliff = stop_at_cliff
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.scales: list[tuple[int, float]] = []  # (step index, c99)
        self.length = 0
        self.lr_of_step: Any = None
        self.lr = 0.0  # of the step the batches in flight belong to
        self.pending: list[float] = []  # losses of those batches
        self.base: list[float] = []
        self.running: float | None = None
        self.first = math.inf
        self.lowest = math.inf

    @override
    def on_train_start(self, trainer: Any, module: Any) -> None:
        if not math.isfinite(trainer.num_training_batches):
            raise ValueError(
                "the geometry finder counts steps per epoch: give the training data a length, or set "
                "limit_train_batches (--trainer limit_train_batches=N)"
            )
        steps_per_epoch = max(1, math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches))
        self.length, self.lr_of_step = self.plan(steps_per_epoch)
        self.base = [group["lr"] for group in trainer.optimizers[0].param_groups]

    @override
    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_index: int) -> None:
        # Steps are optimizer steps: under gradient accumulation, every batch of one step gets its lr.
        lr = self.lr_of_step(trainer.global_step)
        reference = self.base[0] or 1.0
        for group, base in zip(trainer.optimizers[0].param_groups, self.base):
            group["lr"] = base / reference * lr  # a kind's lr_scale is kept
        self.lr = lr

    @override
    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_index: int) -> None:
        self.pending.append(float(outputs["loss"] if isinstance(outputs, Mapping) else outputs))
        if trainer.global_step == len(self.losses):  # a batch accumulated towards the next step
            return
        loss = sum(self.pending) / len(self.pending)  # the step's loss: the mean over its batches
        self.pending.clear()
        self.lrs.append(self.lr)
        self.losses.append(loss)
        step = len(self.losses)
        every = self.measure_every and (step == 1 or step % max(1, self.length // 20) == 0)
        if every or (self.measure_end and step >= self.length):
            scale = measure(trainer.optimizers[0])
            if scale is not None:
                self.scales.append((step - 1, scale))
        if step >= self.length or not math.isfinite(loss):
            trainer.should_stop = True
            return
        self.running = loss if self.running is None else _RUNNING * self.running + (1 - _RUNNING) * loss
        if step == 1:
            self.first = self.running
        self.lowest = min(self.lowest, self.running)
        gain = self.first - self.lowest
        turned = gain > _REAL_GAIN * abs(self.first) and self.running > self.lowest + STOP_SHARE * gain
        if self.stop_at_cliff and step >= 5 and turned:
            trainer.should_stop = True
