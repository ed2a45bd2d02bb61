"""Anchor points: known-good configurations a study trains first, before its sampler proposes any.

Stacey contains other optimizers (docs/algorithm.md, tested in tests/optim/test_special_cases.py and
test_spectral.py): at p = inf and tau = 0 it is Lion; at p = 2 and tau = 0, SGD with Lion's two-beta
momentum; with its matrices in the spectral norm and tau = 0, Muon (with a sign-like step, not AdamW's,
on the rest). A study starts from those (Muon-like where its space can choose the spectral norm), on a
short lr ladder, and from the middle of its space, so that at equal budget a
tuned Stacey is never worse than the best of them, and the sampler models a space whose good corners
it has already seen. A baseline's study starts from its default options on the same ladder, so that
the comparison gives both sides the same head start.

Anchors are written in config terms and mapped into a space's own trial parameters: a value outside
the space's range is clipped into it (a space whose p stops at 8 gets its most sign-like corner),
and a key the space does not sample takes the middle of its range. Each is enqueued once per study,
in order, as far as the study's budget reaches: a 2-trial study gets the first two, and resuming it
to 3 trials enqueues the third (``ANCHORS_ENQUEUED`` counts them). Each anchor trial records its name
(``ANCHOR``), which the progress lines and the table show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from stacey_lightning.attributes import ANCHOR, ANCHORS_ENQUEUED

__all__ = [
    "Anchor",
    "stacey_anchors",
    "baseline_anchors",
    "anchors_for",
    "enqueue_anchors",
    "config_anchor",
    "LADDER",
    "LION_STEP",
    "SGD_STEP",
]

# The ladder of steps around each anchor's own.
LADDER = (1 / 3, 1.0, 3.0)
# Lion's step is lr * sign(c): its lr is the step every coordinate makes, whatever the model. 1e-3 is the
# middle of what works from small models (digits: 1e-3) to small language models (3e-3) and large
# ones (1e-4 to 3e-4). Where the space samples lr as a coordinate step (the presets do), the same
# steps serve every p (benchmarks/results/geometry.md).
LION_STEP = 1e-3
# At p = 2 the step lr * c follows the gradient's size, and what works is smaller than Lion's step.
SGD_STEP = 3e-4


@dataclass(frozen=True)
class Anchor:
    """A named point: config values (``p``, ``lr`` or ``step``, ``tau_horizon``, ``alpha_per_lr``, ...) or a
    baseline's options."""

    name: str
    values: dict[str, Any]


def stacey_anchors(space: Any = None) -> list[Anchor]:
    """Lion-like (p = inf, tau = 0) on the step ladder around ``LION_STEP``, SGD-like (p = 2, tau = 0) at
    ``SGD_STEP``, and the middle of the space at Lion's step and three times it; where ``space`` can put
    a kind in the spectral norm, Muon-like (spectral matrices and convolutions, tau = 0) and the middle of
    the space in the spectral norm too. ``SearchSpace.params_for`` maps them into a space.

    Every geometry first, at its middle step, then the ladders' other rungs: a study with places for
    only a few anchors (a budget of 4 runs has 4) still tries a finite p, where the old order (Lion's
    whole ladder first) made it a study of Lion (benchmarks/results/quality.md, budget 4)."""
    lion = [Anchor(f"lion-like step {LION_STEP * k:.1g}", _lion_like(LION_STEP * k)) for k in LADDER]
    sgd = Anchor(f"sgd-like step {SGD_STEP:.1g}", {**_lion_like(SGD_STEP), "p": 2.0, "lr": None})
    centre = [Anchor(f"centre step {LION_STEP * k:.1g}", {"step": LION_STEP * k}) for k in LADDER[1:]]
    if not _can_be_spectral(space):
        return [lion[1], centre[0], sgd, lion[2], centre[1], lion[0]]
    muon = [
        Anchor(f"muon-like step {LION_STEP * k:.1g}", {**_lion_like(LION_STEP * k), **_SPECTRAL}) for k in LADDER[1:]
    ]
    spectral_centre = Anchor(f"spectral centre step {LION_STEP:.1g}", {"step": LION_STEP, **_SPECTRAL})
    # Muon's upper rung before Lion's: on two of the development half's three sequence workloads the spectral
    # step wanted 3-9x the middle one (1.5-2 points of val_loss better), on the third it diverged there, so
    # both rungs run within a budget of 8 (benchmarks/results/suite.md, "The spectral step on the dev half").
    return [lion[1], muon[0], centre[0], sgd, muon[1], lion[2], spectral_centre, centre[1], lion[0]]


# The kinds a Muon-like anchor puts in the spectral norm (those the space can; Muon's hidden matrices).
_SPECTRAL = {"kinds.matrix.norm": "spectral", "kinds.conv.norm": "spectral"}


def _can_be_spectral(space: Any) -> bool:
    distributions = getattr(space, "distributions", {})
    return any(key in distributions and "spectral" in distributions[key].extremes() for key in _SPECTRAL)


def _lion_like(step: float) -> dict[str, Any]:
    # At p = inf lr is the step itself, for a space that samples lr directly too.
    return {"p": math.inf, "step": step, "lr": step, "tau_horizon": math.inf, "tau": 0.0, "alpha_per_lr": 0.0,
            "alpha": 0.0}  # fmt: skip


def baseline_anchors(space: Any) -> list[Anchor]:
    """The baseline's defaults (``baselines.BASELINES``) with its lr on the ladder."""
    from stacey_lightning.baselines import baseline_options

    defaults = baseline_options(space.optimizer)
    if "lr" not in defaults:
        return [Anchor("defaults", defaults)]
    return [Anchor(f"defaults lr {defaults['lr'] * step:.1g}", {**defaults, "lr": defaults["lr"] * step})
            for step in LADDER]  # fmt: skip


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
    from stacey_lightning.search.space import DEFAULT_GRADIENT_SCALE, coordinate_scale

    resolved = StaceyConfig.from_source(config)
    lr, (beta1, beta2) = resolved.lr, resolved.betas
    values: dict[str, Any] = {
        "p": resolved.p, "lr": lr, "step": lr * coordinate_scale(gradient_scale or DEFAULT_GRADIENT_SCALE, resolved.p),
        "alpha": resolved.alpha, "alpha_per_lr": resolved.alpha / lr if lr > 0 else 0.0, "tau": resolved.tau,
        "tau_horizon": resolved.tau_horizon, "weight_decay": resolved.weight_decay,
        "weight_decay_times_lr": resolved.weight_decay * lr, "beta1": beta1, "beta2": beta2,
        "variant": resolved.variant, "tau_follows_lr": resolved.tau_follows_lr,
    }  # fmt: skip
    for kind, overrides in resolved.kinds.items():
        values.update({f"kinds.{kind}.{key}": value for key, value in overrides.items()})
    return Anchor(name, values)


def enqueue_anchors(study: optuna.Study, anchors: list[Anchor], space: Any, n_trials: int) -> int:
    """Enqueue the first ``n_trials`` of ``anchors`` (as ``space``'s trial parameters) that this study has not
    enqueued yet; returns how many. A study that began without anchors goes on without them."""
    done = study.user_attrs.get(ANCHORS_ENQUEUED)
    if done is None and study.get_trials(deepcopy=False):
        return 0
    done = int(done or 0)
    wanted = anchors[done : max(done, min(len(anchors), n_trials))]
    for anchor in wanted:
        # skip_if_exists: a second host creating the same study at the same moment adds no duplicates.
        study.enqueue_trial(space.params_for(anchor.values), user_attrs={ANCHOR: anchor.name}, skip_if_exists=True)
    study.set_user_attr(ANCHORS_ENQUEUED, done + len(wanted))
    return len(wanted)


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
