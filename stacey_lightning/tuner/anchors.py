"""Anchor points: known-good configurations a study trains first, before its sampler proposes any.

Stacey contains other optimizers (ALGORITHM.md, tested in tests/optim/test_special_cases.py): at
p = inf and tau = 0 it is Lion; at p = 2 and tau = 0, SGD with Lion's two-beta momentum. A study
starts from those, on a short lr ladder, and from the middle of its space, so that at equal budget a
tuned Stacey is never worse than the best of them, and the sampler models a space whose good corners
it has already seen. A baseline's study starts from its default options on the same ladder, so that
the comparison gives both sides the same head start.

Anchors are written in config terms and mapped into a space's own trial parameters: a value outside
the space's range is clipped into it (a space whose p stops at 8 gets its most sign-like corner),
and a key the space does not sample is left to the space. They are enqueued once per study, when it
is created (``ANCHORS_ENQUEUED``); a resumed study does not enqueue them again. Each anchor trial
records its name (``ANCHOR``), which the progress lines and the table show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from stacey_lightning.tuner.attributes import ANCHOR, ANCHORS_ENQUEUED

__all__ = ["Anchor", "stacey_anchors", "baseline_anchors", "anchors_for", "enqueue_anchors", "LADDER"]

# The lr ladder: steps of about 3x around each anchor's own lr.
LADDER = (1 / 3, 1.0, 3.0)
# Lion's step is lr * sign(c): its lr is a step size whatever the model. 1e-3 is the middle of what works
# from small models (digits: 1e-3) to small language models (3e-3) and large ones (1e-4 to 3e-4).
LION_LR = 1e-3


@dataclass(frozen=True)
class Anchor:
    """A named point: config values (``p``, ``lr``, ``tau_horizon``, ``alpha_per_lr``, ...) or a baseline's options."""

    name: str
    values: dict[str, Any]


def stacey_anchors(space: Any) -> list[Anchor]:
    """Lion-like (p = inf, tau = 0) on the lr ladder, SGD-like (p = 2, tau = 0) at the top and bottom of the
    space's lr range, and the space's centre."""
    anchors = [Anchor(f"lion-like lr {LION_LR * step:.1g}", _lion_like(LION_LR * step)) for step in LADDER]
    lr = space.distributions.get("lr")
    if lr is not None and lr.kind in ("uniform", "log_uniform"):
        # SGD's lr scales with 1 / the gradient's size, which differs between models by decades: the
        # two ends of the space's range, and the sampler finds the rest.
        for end, value in (("low", lr.low), ("high", lr.high)):
            anchors.append(Anchor(f"sgd-like lr {end}", {**_lion_like(value), "p": 2.0}))
    anchors.append(Anchor("centre", {}))
    return anchors


def _lion_like(lr: float) -> dict[str, Any]:
    return {"p": math.inf, "lr": lr, "tau_horizon": math.inf, "tau": 0.0, "alpha_per_lr": 0.0, "alpha": 0.0,
            "beta1": 0.9, "beta2": 0.99}  # fmt: skip


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


def enqueue_anchors(study: optuna.Study, anchors: list[Anchor], space: Any) -> int:
    """Enqueue ``anchors`` (as ``space``'s trial parameters) unless this study already did; returns how many."""
    if study.user_attrs.get(ANCHORS_ENQUEUED):
        return 0
    study.set_user_attr(ANCHORS_ENQUEUED, True)
    if study.get_trials(deepcopy=False):  # a study begun without anchors goes on without them
        return 0
    count = 0
    for anchor in anchors:
        params = space.params_for(anchor.values)
        # skip_if_exists: a second host creating the same study at the same moment adds no duplicates.
        study.enqueue_trial(params, user_attrs={ANCHOR: anchor.name}, skip_if_exists=True)
        count += 1
    return count
