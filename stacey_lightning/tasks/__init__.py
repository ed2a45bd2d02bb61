"""Built-in tasks, and resolution of a task given by name or as "module:callable".

A task is a callable ``make(trial=None, **options) -> (LightningModule, LightningDataModule)``; a
callable without parameters is accepted too. The module uses ``StaceyMixin``. If the callable takes
``trial`` it may suggest extra hyperparameters of its own on that ``optuna.Trial``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch


@dataclass(frozen=True)
class Task:
    """A named task: how to build it, which logged metric judges it, and its search-space preset."""

    name: str
    make: Callable
    monitor: str
    direction: str  # "maximize" or "minimize"
    space: str


# Imported lazily so that `import stacey_lightning` stays light.
_BUILTIN = {
    "digits": ("stacey_lightning.tasks.digits", "make_digits", "val_acc", "maximize", "default"),
    "textlm": ("stacey_lightning.tasks.textlm", "make_textlm", "val_bpc", "minimize", "language"),
    "cifar10": ("stacey_lightning.tasks.cifar10", "make_cifar10", "val_acc", "maximize", "vision"),
}

BUILTIN_TASKS = tuple(_BUILTIN)


def resolve_task(task: str | Callable) -> Task:
    """Return the Task for a built-in name, a "package.module:callable" path, or a callable.

    Tasks that are not built in default to monitoring "val_loss" (minimize) with the "default" space.
    """
    if callable(task):
        return Task(getattr(task, "__name__", "task"), task, "val_loss", "minimize", "default")
    if task in _BUILTIN:
        module_name, attribute, monitor, direction, space = _BUILTIN[task]
        return Task(task, getattr(importlib.import_module(module_name), attribute), monitor, direction, space)
    if ":" not in task:
        raise ValueError(f"Unknown task {task!r}: use a built-in name ({', '.join(BUILTIN_TASKS)}) "
                         "or 'package.module:callable'")
    module_name, _, attribute = task.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"Task {task!r}: cannot import module {module_name!r} ({error})") from error
    make = getattr(module, attribute, None)
    if not callable(make):
        raise ValueError(f"Task {task!r}: module {module_name!r} has no callable {attribute!r}")
    return Task(attribute, make, "val_loss", "minimize", "default")


def check_options(task: str, options: dict[str, Any], allowed: Iterable[str], others: str) -> None:
    """Raise a ValueError naming any option of ``task``'s make() that it does not know."""
    allowed = tuple(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown {task} option(s): {', '.join(unknown)} (options are {', '.join(allowed)}; "
                         f"the others are {others})")


def build_seeded(seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` on a private RNG stream: the same seed gives the same weights without touching
    the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
