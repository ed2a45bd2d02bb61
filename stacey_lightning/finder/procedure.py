"""The finder's procedure, ``find_geometry``: Stacey's p, lr and tau for a model in about 1.5 training runs,
in the spirit of Lightning's ``Tuner.lr_find``: short runs from the same initial weights and batches, read
off the loss. Like lr_find it gives the model back as it was given (``_snapshot``) and applies its pick
only when asked (``apply=True``).

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
- The spectral norm (Muon's geometry) is a candidate where the model has hidden matrices or
  convolutions: Muon-like (those in the spectral norm, the rest at p = inf) at the step the factor
  chose, the step read as the spectral update's RMS (the search spaces' rule), as one more confirmation
  run (the runs share the budget equally, so each is shorter).
- tau acts as a pull of x towards its initial weights (alpha = 0 gives the gain any useful alpha
  gives): tau = 1/T (``tau_horizon`` 1, one e-fold over the run) helped at p = 4 on every seed and
  hurt nowhere, so the pick carries ``tau_horizon: 1`` and ``alpha: 0``.

The procedure, within ``RUNS`` (1.5) runs' worth of optimizer steps, every step counted:
0. a reference run at lr 0, as long as a range test: each batch's loss at the initial weights, which the
   range tests' losses are read against (``_recorder``: the batches' own differences drop out);
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

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stacey_lightning import run
from stacey_lightning.finder._recorder import Recorder
from stacey_lightning.finder._snapshot import Snapshot
from stacey_lightning.finder.result import Confirmation, FinderResult, RangeTest, number_text, p_text
from stacey_lightning.lightning.choice import STACEY
from stacey_lightning.lightning.config import StaceyConfig, tau_for_horizon
from stacey_lightning.lightning.param_groups import output_head, parameters_by_kind
from stacey_lightning.optim._spectral import SPECTRAL_RMS
from stacey_lightning.search.anchors import LION_STEP
from stacey_lightning.search.space import DEFAULT_GRADIENT_SCALE, coordinate_scale

__all__ = [
    "find_geometry",
    "find_for_task",
    "find_cliff",
    "smooth",
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
    apply: bool = False,
) -> FinderResult:
    """Suggest Stacey's p, lr and tau for ``model`` trained ``max_epochs`` epochs on ``datamodule``.

    Every short run starts from ``model``'s weights as given and the same batches (``seed``). The optimizer
    steps spent are counted and stay within ``runs`` (1.5) runs of ``max_epochs`` epochs, the range tests'
    overshoot past a cliff included.

    As Lightning's ``lr_find``, it gives ``model`` back as it was given, whether it returns, raises or is
    interrupted (Ctrl-C): its weights, loaded back through the last run's strategy (so FSDP2's shards come
    back too), its optimizer choice and Stacey config, its class and train/eval modes. With ``apply=True``
    it then trains with Stacey at the pick (``set_optimizer_choice``, which calls ``set_stacey_config``).

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
        apply: give ``model`` the pick (Stacey with ``result.config``) once it is found; by default it is
            left with the optimizer and config it was given.

    Returns:
        A ``FinderResult``: ``.config`` (a StaceyConfig), ``.table()``, ``.plot()``, ``.write(dir)``.

    Raises:
        ValueError: a bad argument, before any training.
    """
    candidates = _check(max_epochs, p_candidates, runs)
    if monitor is not None and direction not in ("minimize", "maximize"):
        raise ValueError(f"direction: must be 'minimize' or 'maximize' with a monitor, got {direction!r}")
    base = StaceyConfig.from_source(base_config) if base_config is not None else None
    snapshot = Snapshot(model)
    try:
        if not hasattr(model, "set_optimizer_choice"):
            from stacey_lightning.lightning.adopt import adopt

            adopt(model)
        finder = _Finder(
            model, datamodule, max_epochs=max_epochs, seed=seed, trainer_kwargs=dict(trainer_kwargs or {}),
            runs=runs, base=base or model.stacey_config(), progress=progress, monitor=monitor, direction=direction,
            snapshot=snapshot,
        )  # fmt: skip
        result = finder.find(candidates)
    finally:
        snapshot.restore()
    if apply:
        run.use_optimizer(model, run.optimizer_choice(STACEY, result.config))
    return result


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
    from stacey_lightning.study.spec import check_trainer_kwargs
    from stacey_lightning.tasks import check_task_options, resolve_task

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


def _has_hidden_matrices(model: Any) -> bool:
    """Whether ``model`` has a matrix other than its output head, or a convolution: what the spectral norm is for."""
    by_kind = parameters_by_kind(model)
    head = output_head(model)
    return bool(by_kind.get("conv")) or any(param is not head for param in by_kind.get("matrix", []))


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
        self, model, datamodule, *, max_epochs, seed, trainer_kwargs, runs, base, progress, monitor, direction,
        snapshot,
    ):  # fmt: skip
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
        self.snapshot = snapshot  # the first run's callback: it keeps the initial weights, the others load them
        self.steps_per_epoch: int | None = None  # read by the first run's recorder
        self.used = 0
        self.scale: float | None = None  # the latest c99 measured at the end of a constant-lr run
        self.reference: list[float] | None = None  # each range-test batch's loss at the initial weights

    @property
    def budget(self) -> int:
        return max(1, math.floor(self.runs * self.max_epochs * (self.steps_per_epoch or 1)))

    def find(self, candidates: list[float]) -> FinderResult:
        self.reference = self._reference(len(candidates))
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
            total = self.max_epochs * (self.steps_per_epoch or 1)
            config = self._config(math.inf, LION_STEP, steps=total, pick=True)
            return self._result(config, tests, [])
        confirmations = self._confirm(usable)
        if confirmations:
            chosen = min(confirmations, key=self._rank)
            p, step, spectral = chosen.p, chosen.step / (1 if chosen.stable else 2), chosen.norm == "spectral"
            factor = chosen.factor
            self.scale = chosen.gradient_scale or self.scale
        else:  # no budget left to confirm: the lowest range test, at the more careful factor
            test = min(usable, key=lambda t: t.lowest)
            p, factor, spectral = test.p, FACTORS[-1], False
            step = test.edge_step / factor
        for test in usable:
            test.pick_step = step if test.p == p else test.edge_step / factor
            test.pick_lr = self._lr(test, test.pick_step)
        lr = self._lr(next(t for t in usable if t.p == p), step)
        steps = self.max_epochs * (self.steps_per_epoch or 1)
        config = self._config(p, lr, steps=steps, pick=True, spectral=spectral)
        return self._result(config, tests, confirmations)

    def _result(self, config: StaceyConfig, tests: list[RangeTest], confirmations: list[Confirmation]) -> FinderResult:
        return FinderResult(
            config=config, gradient_scale=self.scale, range_tests=tests, confirmations=confirmations,
            steps_used=self.used, budget=self.budget, steps_per_epoch=self.steps_per_epoch or 0,
            max_epochs=self.max_epochs, monitor=self.monitor, runs=self.runs, relative=self.reference is not None,
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
        plan: list[tuple[RangeTest, float | None, str]] = [(first, factor, "lp") for factor in FACTORS]
        plan += [(test, None, "lp") for test in others[:CONFIRMED]]
        if first.p == math.inf and _has_hidden_matrices(self.model):
            plan.append((first, None, "spectral"))  # one more run: the finite p keep their confirmations
        confirmations: list[Confirmation] = []
        factor = FACTORS[-1]
        for index, (test, planned, norm) in enumerate(plan):
            steps = (self.budget - self.used) // (len(plan) - index)
            if steps < 2:
                break
            confirmations.append(self._confirmation(test, planned or factor, steps, norm))
            self.scale = min(confirmations, key=self._rank).gradient_scale or self.scale
            if index == len(FACTORS) - 1:
                factor = min(confirmations, key=self._rank).factor
        return confirmations

    def _confirmation(self, test: RangeTest, factor: float, steps: int, norm: str = "lp") -> Confirmation:
        step = test.edge_step / factor
        lr = self._lr(test, step)
        config = self._config(test.p, lr, steps=steps, spectral=norm == "spectral")
        record = self._train(config, lambda _: (steps, lambda k: lr), measure_end=True)
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
            gradient_scale=record.scales[-1][1] if record.scales else None, norm=norm,
        )  # fmt: skip
        self.progress(
            f"[stacey-find] confirmation p = {confirmation.geometry}, lr {lr:.3g} "
            f"(step {step:.3g} = cliff / {factor:g}): "
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

    def _config(
        self, p: float, lr: float, *, steps: int | None = None, pick: bool = False, spectral: bool = False
    ) -> StaceyConfig:
        """The base config at (p, lr), alpha 0: tau 0 (a range test), or tau_horizon 1 over a run of
        ``steps`` (tau = 1/steps, written out too, as the pick's ``tau``); a constant lr but in the pick.
        ``spectral``: matrices and convolutions in the spectral norm, their update's RMS lr's step."""
        values = {**self.base.to_dict(), "p": p, "lr": lr, "alpha": 0.0, "tau": 0.0, "tau_horizon": None}
        if spectral:
            kinds = {kind: dict(overrides) for kind, overrides in values["kinds"].items()}
            for kind in ("matrix", "conv"):
                kinds.setdefault(kind, {}).update(norm="spectral", lr_scale=1 / SPECTRAL_RMS)
            values["kinds"] = kinds
        if not pick:
            values["schedule"] = {"name": "constant"}  # the recorder sets each step's lr
            # The finder's runs are measured at their iterate: a range test or a confirmation is no run of
            # the pick's length, which the base's averaged point (if any) is for.
            values["average_horizon"] = None
        if steps is not None:
            values.update(tau=tau_for_horizon(TAU_HORIZON, steps), tau_horizon=TAU_HORIZON)
        return StaceyConfig.from_source(values)

    def _range_length(self, candidates: int, steps_per_epoch: int) -> int:
        """A range test's planned length: its share of ``RANGE_SHARE`` of the budget, within what is left
        (and within the reference run, where there is one)."""
        self.steps_per_epoch = self.steps_per_epoch or steps_per_epoch
        length = min(max(3, math.floor(RANGE_SHARE * self.budget / candidates)), self.budget - self.used)
        return min(length, len(self.reference)) if self.reference else length

    def _reference(self, candidates: int) -> list[float] | None:
        """Each range-test batch's loss at the initial weights: a run at lr 0 as long as a range test. None
        where a loss is not positive and finite (a loss that can be negative has no ratio to read): then the
        range tests read their losses as they are."""

        def plan(steps_per_epoch: int) -> tuple[int, Any]:
            return self._range_length(candidates, steps_per_epoch), lambda k: 0.0

        losses = self._train(self._config(math.inf, LION_STEP), plan).losses  # the recorder sets every lr to 0
        return losses if losses and all(math.isfinite(loss) and loss > 0 for loss in losses) else None

    def _range_test(self, p: float, candidates: int) -> RangeTest:
        low, high = STEP_RANGE
        # The ladder is in coordinate steps; c99 turns it into lr. Before any is measured, the default
        # scale of the search spaces; the test measures its own as it goes, which places its cliff.
        to_lr = 1.0 / coordinate_scale(self.scale or DEFAULT_GRADIENT_SCALE, p)

        def plan(steps_per_epoch: int) -> tuple[int, Any]:
            length = self._range_length(candidates, steps_per_epoch)
            return length, lambda k: low * to_lr * (high / low) ** (k / max(1, length - 1))

        if self.steps_per_epoch is not None and self.budget - self.used < 2:
            return RangeTest(p, [], [])
        config = self._config(p, low * to_lr)
        record = self._train(config, plan, measure_every=True, stop_at_cliff=True, reference=self.reference)
        cliff, smoothed = find_cliff(record.relative)
        test = RangeTest(p, record.lrs, record.losses, smoothed, cliff)
        if smoothed and test.lowest < smoothed[0]:
            # The edge: the cliff, or without one the ladder's top, the most that is known to be safe.
            at = cliff if cliff is not None else len(smoothed) - 1
            test.gradient_scale = max((s for s in record.scales if s[0] <= at), default=(0, None))[1]
            test.edge_step = record.lrs[at] * coordinate_scale(test.gradient_scale or 1.0, p)
        self.progress(
            f"[stacey-find] range test p = {p_text(p)}: {len(record.lrs)} steps, cliff at lr "
            f"{number_text(test.cliff_lr)}, step {number_text(test.edge_step)}, c99 {number_text(test.gradient_scale)}"
        )
        return test

    def _train(
        self, config: StaceyConfig, plan, *, measure_every=False, measure_end=False, stop_at_cliff=False, reference=None
    ):
        """One short run from the initial weights; ``plan(steps_per_epoch) -> (steps, lr_of_step)``."""
        run.use_optimizer(self.model, run.optimizer_choice(STACEY, config))
        recorder = Recorder(
            plan, measure_every=measure_every, measure_end=measure_end, stop_at_cliff=stop_at_cliff, reference=reference
        )
        # Enough epochs for any run within the budget; the recorder stops the run at its planned length.
        epochs = math.ceil(self.runs * self.max_epochs) + 1
        kwargs = {**self.trainer_kwargs, "limit_val_batches": 0, "enable_checkpointing": False}
        callbacks = [self.snapshot, recorder]
        trainer = run.make_trainer(max_epochs=epochs, logger=False, callbacks=callbacks, trainer_kwargs=kwargs)
        run.fit(trainer, self.model, self.datamodule, self.seed)
        self.used += trainer.global_step
        return recorder
