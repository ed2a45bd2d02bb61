"""Anchor points: known-good configurations a study trains first, before its sampler proposes any.

Stacey contains other optimizers (docs/algorithm.md, tested in tests/optim/test_special_cases.py and
test_spectral.py): at p = inf and tau = 0 it is Lion; at p = 2 and tau = 0, SGD with Lion's two-beta
momentum; in Adam's norm and tau = 0, AdamW; with its matrices in the spectral norm, the rest in Adam's and
tau = 0, Muon. A study starts from those (Muon-like where its space can choose the spectral norm) and
from the middle of its space, each at its middle step, then climbs the winner's ladder of steps
(``search.ladder``), so that at equal budget a tuned Stacey is never worse than the best of them, and the
sampler models a space whose good corners it has already seen. A baseline's study starts from its
default options and climbs its lr the same way, so that the comparison gives both sides the same head
start.

Anchors are written in config terms and mapped into a space's own trial parameters: a value outside
the space's range is clipped into it (a space whose p stops at 8 gets its most sign-like corner),
and a key the space does not sample takes the middle of its range. Each is enqueued once per study,
in order, as far as the study's budget reaches, less two places for the winner's ladder from 4 runs up
(``anchor_places``): a 2-trial study gets the first two, and resuming it to 3 trials enqueues the third
(``ANCHORS_ENQUEUED`` counts them); a 4-run study gets two, an 8-run study all five. Each anchor trial records its name
(``ANCHOR``), which the progress lines and the table show, and a rung its ladder and step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from stacey_lightning.attributes import ANCHOR, ANCHORS_ENQUEUED, LADDER, RUNG_COORDINATES
from stacey_lightning.search.space import STEP_SCALE

__all__ = [
    "Anchor",
    "Ladder",
    "stacey_ladders",
    "baseline_ladders",
    "ladders_for",
    "stacey_anchors",
    "baseline_anchors",
    "anchors_for",
    "enqueue_anchors",
    "anchor_places",
    "LADDER_PLACES",
    "enqueue_rung",
    "config_anchor",
    "RUNG",
    "SPECTRAL_KINDS",
    "rest_bounds",
    "embedding_bounds",
    "coupling_bounds",
    "LION_STEP",
    "SGD_STEP",
]

# The factor between one rung of a ladder and the next (search/ladder.py climbs them). A step halfway between the
# best rung and its better neighbour, tried after them, was never the best trial of a development study at 8 or 16
# runs (benchmarks/results/spectral_coupling.md, "Round 12").
RUNG = 3.0
# The places a study of 4 runs or more keeps for its winner's ladder (anchor_places).
LADDER_PLACES = 2
# Lion's step is lr * sign(c): its lr is the step every coordinate makes, whatever the model. 1e-3 is the
# middle of what works from small models (digits: 1e-3) to small language models (3e-3) and large
# ones (1e-4 to 3e-4). Where the space samples lr as a coordinate step (the presets do), the same
# steps serve every p (benchmarks/results/geometry.md).
LION_STEP = 1e-3
# At p = 2 the step lr * c follows the gradient's size, and what works is smaller than Lion's step.
SGD_STEP = 3e-4
# The momentum's beta2 of each: Lion's default is 0.99; Stacey at tau = 0 is Muon with nesterov momentum mu at
# betas (mu^2, mu), and torch's Muon has mu = 0.95 (its beta1, 0.9025, is the presets' fixed 0.9 within 0.3%).
LION_BETA2 = 0.99
MUON_BETAS = {"beta1": 0.95**2, "beta2": 0.95}


@dataclass(frozen=True)
class Anchor:
    """A named point: config values (``p``, ``lr`` or ``step``, ``tau_horizon``, ``alpha_per_lr``, ...) or a
    baseline's options; a rung of a ``Ladder`` names it (``ladder``), its ``step``, its ``rest`` and its
    ``embedding`` and its ``coupling``."""

    name: str
    values: dict[str, Any]
    ladder: str | None = None
    step: float | None = None
    rest: float = 1.0
    embedding: float = 1.0
    coupling: float = 0.0

    @property
    def coordinates(self) -> tuple:
        """(step, rest, embedding, coupling): where on its ladder a rung is (attributes.RUNG_COORDINATES)."""
        return self.step, self.rest, self.embedding, self.coupling


@dataclass(frozen=True)
class Ladder:
    """A geometry at every step: ``values(step)`` are its config values there, ``middle`` the step of the
    rung a study tries first; its name and ``label`` name each rung ("muon-like step 0.003"). A ladder
    with ``rest`` moves along a second coordinate, the step of the rest of the model (all but the spectral
    kinds) times the step; one with ``embedding`` along a third, the embeddings' step times the rest's; one
    with ``coupling`` along a fourth, Stacey's pull towards z (tau > 0) from a geometry's tau = 0."""

    name: str
    middle: float
    values: Callable[[float], dict[str, Any]]
    label: str = "step"
    rest: bool = False
    embedding: bool = False
    coupling: bool = False

    def rung(self, step: float, rest: float = 1.0, embedding: float = 1.0, coupling: float = 0.0) -> Anchor:
        """The rung at ``step``: the spectral kinds at ``step``, the rest of the model at ``rest`` times it
        (the trial's step, the spectral kinds' step_scale 1 / rest), the embeddings at ``embedding`` times
        the rest's (their step_scale), x pulled towards z at ``coupling`` per run (tau_horizon 1 / coupling;
        alpha as the geometry's, which a space clips to its least: the presets' 0.1 lr, so z moves slowly)."""
        name = f"{self.name} {self.label} {step:.1g}"
        name += f", rest x{rest:.2g}" if rest != 1.0 else ""
        name += f", embeddings x{embedding:.2g}" if embedding != 1.0 else ""
        name += f", tau_horizon {1 / coupling:.2g}" if coupling else ""
        values = self.values(step * rest)
        if rest != 1.0:
            values.update({f"kinds.{kind}.{STEP_SCALE}": 1.0 / rest for kind in SPECTRAL_KINDS})
        if embedding != 1.0:
            values[f"kinds.embedding.{STEP_SCALE}"] = embedding
        if coupling:
            values.update(tau_horizon=1.0 / coupling, tau=None)  # tau from the horizon and the run's steps
        return Anchor(name, values, self.name, step, rest, embedding, coupling)


def stacey_ladders(space: Any = None) -> list[Ladder]:
    """Where ``space`` can put a kind in the spectral norm, Muon-like (spectral matrices and convolutions,
    tau = 0, Muon's momentum, the rest in Adam's norm: Muon) from ``LION_STEP``; Lion-like (p = inf, tau = 0,
    Lion's beta2) from the same step; the middle of the space from it; SGD-like (p = 2, tau = 0, Lion's
    momentum) from ``SGD_STEP``; last, Muon-lion-like (Muon's matrices, the rest sign-like) from
    ``LION_STEP``, first instead of Muon-like in a space that cannot choose Adam's norm. A space's
    ``anchor_step`` replaces ``LION_STEP`` (and scales ``SGD_STEP`` alike): on the development half's two
    language models every one of the five geometries was better at 3e-3 than at 1e-3, by 0.22 to 0.60 bpc
    (benchmarks/results/suite_dev.md, "Round 10"), and the language preset starts there.
    ``SearchSpace.params_for`` maps them into a space.

    The order is the anchors': the first trains to its end with nothing to be pruned against, and later ones
    may be pruned against it (those Hyperband puts in its bracket), so the geometry most often best goes
    first. On the development half's seven models (round 5's studies of 8 runs, suite_dev.md) the Muon-like
    anchor was the best of the four on five, the Lion-like on one, and three tied on the seventh; the centre
    and the SGD-like anchor were never best alone. Round 6 measured the order alone at 8 runs: the GRU's and the
    narrow transformer's studies each gained a rung (both lost), and one winner changed, on the cancer MLP,
    by one image in 113 (benchmarks/results/suite_dev.md). Round 7 gave the rest of the Muon-like point Adam's
    norm (Muon itself) and put the sign-like rest last, where it moved the Lion-like anchor least: measured
    against four orders on the same seven models, the only one that lost nothing but the autoencoder, whose
    sign-like rest starts slowly and is pruned wherever it goes (suite_dev.md, "Round 7")."""
    ladders = []
    spectral, adam = _can_be_spectral(space), _can_be_adam(space)
    apart = dict(rest=rest_bounds(space) is not None, embedding=embedding_bounds(space) is not None)
    # The geometries at tau = 0 (all but the centre, which the space's middle horizon couples already).
    coupled = coupling_bounds(space) is not None
    # A space's anchor_step moves every middle step by one factor (the language preset's: 3x).
    middle = getattr(space, "anchor_step", None) or LION_STEP
    muon_lion = Ladder("muon-lion-like", middle, _muon_lion_like, **apart, coupling=coupled)
    if spectral:
        ladders.append(Ladder("muon-like", middle, _muon_like, **apart, coupling=coupled) if adam else muon_lion)
    ladders.append(Ladder("lion-like", middle, _lion_like, coupling=coupled))
    ladders.append(Ladder("centre", middle, lambda step: {"step": step, **_ALIKE}))
    sgd_step = SGD_STEP * middle / LION_STEP
    ladders.append(Ladder("sgd-like", sgd_step, _sgd_like, coupling=coupled))
    if spectral and adam:
        ladders.append(muon_lion)
    return ladders


def stacey_anchors(space: Any = None) -> list[Anchor]:
    """Every geometry of ``stacey_ladders`` at its middle step: a study with places for only a few anchors
    (a budget of 4 runs has 4) still tries every one, where an order by ladder (Lion's whole ladder first)
    made it a study of Lion (benchmarks/results/quality.md, budget 4). The winner's ladder is climbed after
    them (search/ladder.py), where a fixed second rung for each geometry used to be: the step the
    development half's models wanted ranged from 1e-3 to 9e-3 for the same geometry
    (benchmarks/results/spectral_coupling.md; the studies before and after: suite_dev.md)."""
    return [ladder.rung(ladder.middle) for ladder in stacey_ladders(space)]


# The kinds a Muon-like anchor puts in the spectral norm (those the space can; Muon's hidden matrices).
SPECTRAL_KINDS = ("matrix", "conv")
_SPECTRAL = {f"kinds.{kind}.norm": "spectral" for kind in SPECTRAL_KINDS}
# Every kind at the trial's step, where the space lets a kind step apart (its step_scale).
_ALIKE = {f"kinds.{kind}.{STEP_SCALE}": 1.0 for kind in (*SPECTRAL_KINDS, "embedding")}


def _muon_like(step: float) -> dict[str, Any]:
    """Muon: spectral matrices and convolutions at ``step`` (their update's RMS), Muon's momentum, tau = 0, and
    the rest of the model in Adam's norm at the same RMS step (AdamW at Muon's lr, as torch's Muon is used)."""
    return {**_muon_lion_like(step), "norm": "adam"}


def _muon_lion_like(step: float) -> dict[str, Any]:
    """Spectral matrices and convolutions at ``step`` (their update's RMS), Muon's momentum, tau = 0, and the
    rest of the model sign-like at the same step. Its ladder, as the Muon-like one, moves the rest's step apart
    (``Ladder.rung``):
    Muon gives the rest AdamW at its lr, up to five times its matrices' update RMS, and the rest's best step
    was 1 to 3 times the matrices' on the development half's sequence models; and the embeddings' apart from
    the rest's: three times it was better on the development transformer, worse on the GRU
    (benchmarks/results/spectral_coupling.md)."""
    return {**_lion_like(step), **_SPECTRAL, **MUON_BETAS}


def rest_bounds(space: Any) -> tuple[float, float] | None:
    """The range of the spectral kinds' ``step_scale`` in ``space`` (their step, times the rest's), or None."""
    for kind in SPECTRAL_KINDS:
        bounds = _step_scale_bounds(space, kind)
        if bounds is not None:
            return bounds
    return None


def embedding_bounds(space: Any) -> tuple[float, float] | None:
    """The range of the embeddings' ``step_scale`` in ``space`` (their step, times the rest's), or None."""
    return _step_scale_bounds(space, "embedding")


def coupling_bounds(space: Any) -> tuple[float, float] | None:
    """The range of the pull towards z per run (1 / tau_horizon; 0: tau = 0) ``space`` samples, or None where
    it samples no horizon."""
    distribution = getattr(space, "distributions", {}).get("tau_horizon")
    if distribution is None or distribution.kind != "horizon":
        return None
    return distribution.r_range()


def _step_scale_bounds(space: Any, kind: str) -> tuple[float, float] | None:
    distribution = getattr(space, "distributions", {}).get(f"kinds.{kind}.{STEP_SCALE}")
    if distribution is not None and distribution.kind in ("log_uniform", "uniform"):
        return float(distribution.low), float(distribution.high)
    return None


def _can_be_spectral(space: Any) -> bool:
    distributions = getattr(space, "distributions", {})
    return any(key in distributions and "spectral" in distributions[key].extremes() for key in _SPECTRAL)


def _can_be_adam(space: Any) -> bool:
    distribution = getattr(space, "distributions", {}).get("norm")
    return distribution is not None and "adam" in distribution.extremes()


def _lion_like(step: float) -> dict[str, Any]:
    # At p = inf lr is the step itself, for a space that samples lr directly too.
    return {"p": math.inf, "step": step, "lr": step, "tau_horizon": math.inf, "tau": 0.0, "alpha_per_lr": 0.0,
            "alpha": 0.0, "beta2": LION_BETA2, **_ALIKE}  # fmt: skip


def _sgd_like(step: float) -> dict[str, Any]:
    return {**_lion_like(step), "p": 2.0, "lr": None}


def baseline_ladders(space: Any) -> list[Ladder]:
    """The baseline's defaults (``baselines.BASELINES``) on a ladder of lr from its default lr; none for an
    optimizer without an lr."""
    from stacey_lightning.baselines import baseline_options

    defaults = baseline_options(space.optimizer)
    if "lr" not in defaults:
        return []
    return [Ladder("defaults", defaults["lr"], lambda lr: {**defaults, "lr": lr}, label="lr")]


def baseline_anchors(space: Any) -> list[Anchor]:
    """The baseline's defaults, the middle of its ladder: the same start and the same climb as Stacey's."""
    from stacey_lightning.baselines import baseline_options

    ladders = baseline_ladders(space)
    return [ladder.rung(ladder.middle) for ladder in ladders] or [Anchor("defaults", baseline_options(space.optimizer))]


def ladders_for(optimizer: str, space: Any) -> list[Ladder]:
    """The ladders of a study of ``optimizer`` over ``space``."""
    from stacey_lightning.baselines import STACEY

    return stacey_ladders(space) if optimizer == STACEY else baseline_ladders(space)


def anchors_for(optimizer: str, space: Any) -> list[Anchor]:
    """The anchors of a study of ``optimizer`` over ``space``."""
    from stacey_lightning.baselines import STACEY

    return stacey_anchors(space) if optimizer == STACEY else baseline_anchors(space)


def config_anchor(config: Any, name: str = "start config", gradient_scale: float | None = None) -> Anchor:
    """An anchor at a whole Stacey config (a mapping, a StaceyConfig or a YAML path such as ``stacey-find``'s
    or a study's ``best.yaml``), to train before the others: ``tune(start_from=...)``. Its lr is written as
    the coordinate step that gives that lr at ``gradient_scale``: for a new study, the scale it assumes
    before its first trial has measured one (its first trial trains it at exactly its lr); for a study that
    exists, the scale it has measured (its next trial does)."""
    from stacey_lightning.lightning.config import StaceyConfig
    from stacey_lightning.search.space import DEFAULT_GRADIENT_SCALE, stepping_alike, unit_step

    resolved = StaceyConfig.from_source(config)
    lr, (beta1, beta2), scale = resolved.lr, resolved.betas, gradient_scale or DEFAULT_GRADIENT_SCALE
    values: dict[str, Any] = {
        "p": resolved.p, "lr": lr, "step": lr * unit_step(scale, resolved.p, resolved.norm),
        "norm": resolved.norm, "beta_v": resolved.beta_v,
        "alpha": resolved.alpha, "alpha_per_lr": resolved.alpha / lr if lr > 0 else 0.0, "tau": resolved.tau,
        "tau_horizon": resolved.tau_horizon, "weight_decay": resolved.weight_decay,
        "weight_decay_times_lr": resolved.weight_decay * lr, "beta1": beta1, "beta2": beta2,
        "variant": resolved.variant, "tau_follows_lr": resolved.tau_follows_lr,
    }  # fmt: skip
    for kind, overrides in resolved.kinds.items():
        values.update({f"kinds.{kind}.{key}": value for key, value in overrides.items()})
        alike = stepping_alike(scale, resolved.p, overrides.get("p"), overrides.get("norm"), resolved.norm)
        # A space that lets the kind step apart gets its lr_scale as the step it makes, times the config's.
        values[f"kinds.{kind}.{STEP_SCALE}"] = overrides.get("lr_scale", alike) / alike
    return Anchor(name, {**_ALIKE, **values})


def anchor_places(n_trials: int) -> int:
    """How many of a study's ``n_trials`` places anchors may take: all below 4, else all but ``LADDER_PLACES``,
    which the winner's ladder keeps. At 4 runs the four geometries at their middle steps had left no place to
    climb the step the model wants; the first two anchors and two rungs were better on the development half's
    narrow transformer (2.87 -> 2.77 bpc) and the same on its six other models (suite_dev.md, "Round 7")."""
    return n_trials if n_trials < 4 else n_trials - LADDER_PLACES


def enqueue_anchors(
    study: optuna.Study, anchors: list[Anchor], space: Any, n_trials: int, search_places: int | None = None
) -> int:
    """Enqueue the first ``anchor_places(n_trials)`` of ``anchors`` (as ``space``'s trial parameters), no more
    than ``search_places`` (the runs a study's confirmation reserve leaves to its search), that this study has
    not enqueued yet; returns how many. A study that began without anchors goes on without them.

    ``n_trials`` is the study's whole plan, confirmation runs included: the rule was decided at 4 runs, where no
    run is reserved, and counted on the search's places it had taken the fifth anchor from a study of 8 (6
    places for the search), which the development half at 8 runs measured as worse (suite_dev.md, "Round 8")."""
    done = study.user_attrs.get(ANCHORS_ENQUEUED)
    if done is None and study.get_trials(deepcopy=False):
        return 0
    done = int(done or 0)
    places = anchor_places(n_trials) if search_places is None else min(anchor_places(n_trials), search_places)
    wanted = anchors[done : max(done, min(len(anchors), places))]
    for anchor in wanted:
        enqueue_rung(study, anchor, space)
    study.set_user_attr(ANCHORS_ENQUEUED, done + len(wanted))
    return len(wanted)


def enqueue_rung(study: optuna.Study, anchor: Anchor, space: Any) -> None:
    """Enqueue ``anchor`` as ``space``'s trial parameters, with its name and, for a ladder's rung, its ladder
    and step (what search/ladder.py reads back)."""
    attrs: dict[str, Any] = {ANCHOR: anchor.name}
    if anchor.ladder is not None:
        attrs.update({LADDER: anchor.ladder, **dict(zip(RUNG_COORDINATES, anchor.coordinates))})
    # skip_if_exists: a second host creating the same study at the same moment adds no duplicates.
    study.enqueue_trial(space.params_for(anchor.values), user_attrs=attrs, skip_if_exists=True)


def add_start_point(study: optuna.Study, anchor: Anchor, space: Any) -> int | None:
    """Enqueue ``anchor`` (a ``start_from`` config) in a study that already has trials, unless one of them has
    its parameters; returns the number of the trial that holds it, or None if it was added. Each start point
    added this way has a name of its own ("start_from 2", ...): workers fail a later copy of an anchor
    they have seen by name, and this one is no copy of the study's first start point."""
    params, trials = space.params_for(anchor.values), study.get_trials(deepcopy=False)
    for trial in trials:
        if (trial.system_attrs.get("fixed_params") or trial.params) == params:  # a waiting trial's own
            return trial.number
    named = sum(1 for t in trials if str(t.user_attrs.get(ANCHOR, "")).startswith(anchor.name))
    study.enqueue_trial(params, user_attrs={ANCHOR: f"{anchor.name} {named + 1}"}, skip_if_exists=True)
    return None
