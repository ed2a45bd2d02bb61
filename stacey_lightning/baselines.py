"""The optimizers Stacey is compared with, by name or by class path, and how a module is switched to one.

Built-in names and their defaults (good values measured on the digits MLP, docs/algorithm.md and
benchmarks/results/geometry.md; Lion's is also the middle of Stacey's Lion-like anchors, so that an
equal-budget comparison starts both from the same lr ladder; Muon's are AdamW's, as Moonshot's recipe
reuses them; Schedule-Free's are its AlgoPerf self-tuning settings, less the warmup):

============  ============================================  =====================================
name          class                                         defaults
============  ============================================  =====================================
adamw         torch.optim.AdamW                             lr 3e-3, weight_decay 1e-2
sgd           torch.optim.SGD                               lr 0.1, momentum 0.9
lion          lion_pytorch.Lion                             lr 1e-3, weight_decay 1e-2
muon          optim.muon_with_adamw.MuonWithAdamW           lr 3e-3, weight_decay 1e-2
schedulefree  schedulefree.AdamWScheduleFree                lr 2.5e-3, betas (0.9, 0.9955),
                                                            weight_decay 0.08
============  ============================================  =====================================

``muon`` is torch.optim.Muon on the hidden 2-D matrices (not embeddings, vectors or the output head)
and AdamW on the rest, one lr and weight decay for both (``MuonWithAdamW``); torch.optim.Muon alone
cannot train a model with a bias, so its class path is refused with a pointer to ``muon``.
``schedulefree`` (``pip install 'stacey-lightning[peers]'``) is evaluated and saved at its averaged
point: the mixin switches it to eval wherever Lightning switches the module (``StaceyMixin``).

Any other optimizer is named by its class path, for example ``"torch.optim.RAdam"``; it starts from
its own defaults. ``"stacey"`` is not a baseline: the module's ``StaceyMixin`` builds it from a Stacey
config. A baseline reaches a module through the same door as Stacey (``optimizer_choice`` here, then
the mixin's ``set_optimizer_choice``): the same parameter groups by kind, vectors without weight
decay, and a constant learning rate.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stacey_lightning._imports import import_object
from stacey_lightning.lightning.choice import STACEY

if TYPE_CHECKING:
    import torch

    from stacey_lightning.lightning.choice import OptimizerChoice

__all__ = ["BASELINES", "STACEY", "DEFAULT_OPTIMIZERS", "optimizer_class", "baseline_options", "optimizer_choice"]
DEFAULT_OPTIMIZERS = (STACEY, "adamw", "sgd", "lion")  # what stacey-compare trains unless told otherwise

# Class paths, imported only when used: the command line reads these names without importing torch.
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "adamw": ("torch.optim.AdamW", {"lr": 3e-3, "weight_decay": 1e-2}),
    "sgd": ("torch.optim.SGD", {"lr": 0.1, "momentum": 0.9}),
    "lion": ("lion_pytorch.Lion", {"lr": 1e-3, "weight_decay": 1e-2}),
    "muon": ("stacey_lightning.optim.muon_with_adamw.MuonWithAdamW", {"lr": 3e-3, "weight_decay": 1e-2}),
    "schedulefree": (
        "schedulefree.AdamWScheduleFree",
        {"lr": 2.5e-3, "betas": (0.9, 0.9955), "weight_decay": 0.08},
    ),
}
# Class paths that cannot train a whole model alone, and the baseline name that wraps them.
_WRAPPED = {"torch.optim.Muon": "muon", "torch.optim._muon.Muon": "muon"}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """Return the optimizer class for a baseline name (a key of ``BASELINES``) or a class path."""
    path = BASELINES[name][0] if name in BASELINES else name
    if path in _WRAPPED:
        raise ValueError(
            f"Optimizer {name!r} takes 2-D parameters only and cannot train a model's biases, norms and "
            f"embeddings: use {_WRAPPED[path]!r} (torch.optim.Muon on the hidden matrices, AdamW on the rest)"
        )
    if "." not in path:
        raise ValueError(
            f"Unknown optimizer {name!r}: use {STACEY!r}, a baseline name "
            f"({', '.join(BASELINES)}) or a class path such as 'torch.optim.RAdam'"
        )
    cls = import_object(path, what=f"Optimizer {name!r}")
    import torch

    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"Optimizer {name!r}: {path!r} is not a torch.optim.Optimizer subclass")
    return cls


def baseline_options(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments a baseline is built with: its defaults updated by ``overrides``.

    Raises a ValueError naming the option when the optimizer's constructor does not accept it.
    """
    options = dict(BASELINES[name][1]) if name in BASELINES else {}
    options.update(overrides or {})
    accepted = inspect.signature(optimizer_class(name).__init__).parameters
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in accepted.values())
    for key in options:
        if key == "params" or (key not in accepted and not takes_any):
            allowed = ", ".join(k for k in accepted if k not in ("self", "params"))
            raise ValueError(f"Optimizer {name!r} has no option {key!r} (its options: {allowed})")
    return options


def optimizer_choice(name: str, overrides: Mapping[str, Any] | None = None) -> OptimizerChoice:
    """The ``OptimizerChoice`` of the baseline ``name`` with ``overrides`` on its defaults.

    Its weight decay is always explicit (the class's own default where neither sets it), because the
    groups by kind give vectors none and every other group this value.
    """
    from stacey_lightning.lightning.choice import OptimizerChoice

    if name == STACEY:
        raise ValueError(f"{STACEY!r} is not a baseline: use OptimizerChoice.stacey(config)")
    cls = optimizer_class(name)
    options = baseline_options(name, overrides)
    default = inspect.signature(cls.__init__).parameters.get("weight_decay")
    if "weight_decay" not in options and default is not None and default.default is not inspect.Parameter.empty:
        options["weight_decay"] = default.default
    return OptimizerChoice(name, optimizer_class=cls, options=options)
