"""The optimizers Stacey is compared with, by name or by class path, and how a module is switched to one.

Built-in names and their defaults (good values measured on the digits MLP, ALGORITHM.md and
benchmarks/results/geometry.md; Lion's is also the middle of Stacey's Lion-like anchors, so that an
equal-budget comparison starts both from the same lr ladder):

========  ======================  =========================================
name      class                   defaults
========  ======================  =========================================
adamw     torch.optim.AdamW       lr 3e-3, weight_decay 1e-2
sgd       torch.optim.SGD         lr 0.1, momentum 0.9
lion      lion_pytorch.Lion       lr 1e-3, weight_decay 1e-2
========  ======================  =========================================

Any other optimizer is named by its class path, for example ``"torch.optim.RAdam"``; it starts from
its own defaults. ``"stacey"`` is not a baseline: the module's ``StaceyMixin`` builds it from a Stacey
config. Baselines train every parameter in one group with a constant learning rate.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["BASELINES", "STACEY", "DEFAULT_OPTIMIZERS", "optimizer_class", "baseline_options", "use_baseline"]

STACEY = "stacey"
DEFAULT_OPTIMIZERS = (STACEY, "adamw", "sgd", "lion")  # what stacey-compare trains unless told otherwise

# Class paths, imported only when used: the command line reads these names without importing torch.
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "adamw": ("torch.optim.AdamW", {"lr": 3e-3, "weight_decay": 1e-2}),
    "sgd": ("torch.optim.SGD", {"lr": 0.1, "momentum": 0.9}),
    "lion": ("lion_pytorch.Lion", {"lr": 1e-3, "weight_decay": 1e-2}),
}


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """Return the optimizer class for a baseline name ("adamw", "sgd", "lion") or a class path."""
    path = BASELINES[name][0] if name in BASELINES else name
    module_name, _, class_name = path.rpartition(".")
    if not module_name:
        raise ValueError(
            f"Unknown optimizer {name!r}: use {STACEY!r}, a baseline name "
            f"({', '.join(BASELINES)}) or a class path such as 'torch.optim.RAdam'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        hint = " (pip install lion-pytorch)" if module_name == "lion_pytorch" else ""
        raise ValueError(f"Optimizer {name!r}: cannot import module {module_name!r}{hint}: {error}") from error
    import torch

    cls = getattr(module, class_name, None)
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


def use_baseline(module: torch.nn.Module, name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Make ``module.configure_optimizers`` build the baseline ``name`` instead of Stacey.

    Only this instance changes; its class keeps Stacey. Returns the options the optimizer is built with.
    """
    if name == STACEY:
        raise ValueError(f"{STACEY!r} is not a baseline: hand its config to the module's set_stacey_config")
    cls = optimizer_class(name)
    options = baseline_options(name, overrides)

    def configure_optimizers(self: torch.nn.Module) -> torch.optim.Optimizer:
        return cls(self.parameters(), **options)

    module.configure_optimizers = types.MethodType(configure_optimizers, module)
    return options
