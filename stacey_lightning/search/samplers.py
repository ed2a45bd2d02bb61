"""Samplers and pruners by name, by class path, or as objects.

Names (``--sampler``, ``--pruner``):

==========  ==================================================================================
sampler     what it builds
==========  ==================================================================================
tpe         ``TPESampler(multivariate=True, n_startup_trials=startup_trials(n_trials))`` (default)
gp          ``GPSampler(n_startup_trials=startup_trials(n_trials))``
cmaes       ``CmaEsSampler(n_startup_trials=startup_trials(n_trials))`` (needs the cmaes package)
random      ``RandomSampler()``
qmc         ``QMCSampler()`` (scrambled Sobol)
==========  ==================================================================================

==========  ==================================================================================
pruner      what it builds
==========  ==================================================================================
hyperband   ``HyperbandPruner(min_resource=1, max_resource=max_epochs)`` (default)
median      ``MedianPruner(n_startup_trials=startup_trials(n_trials), n_warmup_steps=1)``
none        ``NopPruner()``: every trial trains for max_epochs
==========  ==================================================================================

Anything else is a class path (``optuna.samplers.NSGAIISampler``), built with no arguments except
``seed`` for a sampler that takes one. Every sampler is seeded from the study's seed, the worker's
index and the number of trials already in the study, so resumed and parallel workers do not repeat
one another's draws.
"""

from __future__ import annotations

import inspect
from typing import Any

import optuna

from stacey_lightning._imports import import_object
from stacey_lightning.attributes import DEFAULT_PRUNER, DEFAULT_SAMPLER, PRUNERS, SAMPLERS

__all__ = ["startup_trials", "make_sampler", "make_pruner", "check_choice"]


def startup_trials(n_trials: int) -> int:
    """Trials a model-based sampler draws at random before it models: a quarter of the budget, 2 to 10.

    Optuna's default (10) would leave a 12-trial study almost random; anchor trials count as history too.
    """
    return max(2, min(10, n_trials // 4))


def _class_at(path: str, base: type, what: str) -> type:
    names = SAMPLERS if what == "sampler" else PRUNERS
    unknown = (
        f"{what}: {path!r} is neither one of {', '.join(names)} nor the class path of an "
        f"{base.__module__}.{base.__name__} subclass"
    )
    if "." not in path and ":" not in path:
        raise ValueError(unknown)
    found = import_object(path, what=what)
    if not (inspect.isclass(found) and issubclass(found, base)):
        raise ValueError(unknown)
    return found


def check_choice(choice: Any, what: str) -> None:
    """Raise a ValueError naming ``what`` ("sampler" or "pruner") if ``choice`` names nothing buildable."""
    names, base = (SAMPLERS, optuna.samplers.BaseSampler) if what == "sampler" else (PRUNERS, optuna.pruners.BasePruner)
    if choice is None or isinstance(choice, base) or choice in names:
        return
    if not isinstance(choice, str):
        raise ValueError(
            f"{what}: expected a name ({', '.join(names)}), a class path or an optuna object, got {choice!r}"
        )
    _class_at(choice, base, what)


def make_sampler(choice: Any, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    """The sampler ``choice`` names (None: the default), seeded with ``seed``; objects are used as they are."""
    if isinstance(choice, optuna.samplers.BaseSampler):
        return choice
    choice = choice or DEFAULT_SAMPLER
    startup = startup_trials(n_trials)
    if choice == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=startup, seed=seed)
    if choice == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=startup, seed=seed)
    if choice == "cmaes":
        return optuna.samplers.CmaEsSampler(n_startup_trials=startup, seed=seed)
    if choice == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if choice == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    cls = _class_at(choice, optuna.samplers.BaseSampler, "sampler")
    return cls(seed=seed) if "seed" in inspect.signature(cls).parameters else cls()


def make_pruner(choice: Any, max_epochs: int, n_trials: int) -> optuna.pruners.BasePruner:
    """The pruner ``choice`` names (None: the default), sized to ``max_epochs``."""
    if isinstance(choice, optuna.pruners.BasePruner):
        return choice
    choice = choice or DEFAULT_PRUNER
    if choice == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if choice == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials(n_trials), n_warmup_steps=1)
    if choice == "none":
        return optuna.pruners.NopPruner()
    return _class_at(choice, optuna.pruners.BasePruner, "pruner")()
