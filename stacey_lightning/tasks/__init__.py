"""Built-in tasks, and resolution of a task given by name, as "module:callable" or as a LightningCLI config.

A task is a callable ``make(trial=None, seed=0, **options) -> (LightningModule, LightningDataModule)``;
``trial`` and ``seed`` are optional, and a callable without parameters is accepted too. The module
uses ``StaceyMixin``. If the callable takes ``trial`` it may suggest extra hyperparameters of its own
on that ``optuna.Trial``; if it takes ``seed`` the tools pass theirs (``--seed``).

"module:callable" is imported like ``python -m`` imports: the command-line tools put the current
folder first on the import path, so ``--task mynet:make`` finds ``mynet.py`` where you stand.

A path ending in .yaml or .yml is a LightningCLI config file (``--lightning-config``; see
``tasks.lightning_config``): its make() builds the file's module and datamodule, and the task carries
the file's Trainer settings, epochs and monitored metric. ``tasks.lightning_script.LightningFiles(config,
script)`` is one read with its LightningCLI script (``--lightning-script``), for ``LightningCLI(Model, Data)``.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stacey_lightning._imports import import_object


@dataclass(frozen=True)
class Task:
    """A named task: how to build it, which logged metric judges it, and its search-space preset."""

    name: str
    make: Callable
    monitor: str
    direction: str  # "maximize" or "minimize"
    space: str
    # Trainer settings the task brings (a LightningCLI file's), under the tools' own; and its own epochs,
    # the default of --max-epochs (None: the tools' default).
    trainer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_epochs: int | None = None
    lightning_config: Any = None  # the parsed file (tasks.lightning_config.LightningConfig) of a task given as one


# Imported lazily so that `import stacey_lightning` stays light.
_BUILTIN = {
    "digits": ("stacey_lightning.tasks.digits", "make_digits", "val_acc", "maximize", "default"),
    "textlm": ("stacey_lightning.tasks.textlm", "make_textlm", "val_bpc", "minimize", "language"),
    "cifar10": ("stacey_lightning.tasks.cifar10", "make_cifar10", "val_acc", "maximize", "vision"),
}

BUILTIN_TASKS = tuple(_BUILTIN)


def resolve_task(task: str | Callable) -> Task:
    """Return the Task for a built-in name, a "package.module:callable" path, a LightningCLI config file
    (a path ending in .yaml or .yml), or a callable.

    Tasks that are not built in default to monitoring "val_loss" (minimize) with the "default" space; a
    LightningCLI config's to its ModelCheckpoint's or EarlyStopping's monitor, if it has one.
    """
    from stacey_lightning.tasks.lightning_config import is_lightning_config, load_lightning_config

    if is_lightning_config(task):
        config = load_lightning_config(os.fspath(task), getattr(task, "script", None))
        trainer, epochs = config.trainer_kwargs, config.max_epochs
        return Task(
            config.name, config.make, config.monitor, config.direction, "default",
            trainer_kwargs=trainer, max_epochs=epochs, lightning_config=config,
        )  # fmt: skip
    if callable(task):
        return Task(getattr(task, "__name__", "task"), task, "val_loss", "minimize", "default")
    if task in _BUILTIN:
        module_name, attribute, monitor, direction, space = _BUILTIN[task]
        return Task(task, import_object(f"{module_name}:{attribute}", what=f"Task {task!r}"), monitor, direction, space)
    if ":" not in task:
        raise ValueError(
            f"Unknown task {task!r}: use a built-in name ({', '.join(BUILTIN_TASKS)}) or 'package.module:callable'"
        )
    make = import_object(task, what=f"Task {task!r}")
    if not callable(make):
        raise ValueError(f"Task {task!r}: {make!r} is not callable")
    return Task(task.partition(":")[2], make, "val_loss", "minimize", "default")


# Arguments the tools pass to make() themselves: a task option of that name would be overridden.
_PASSED_BY_THE_TOOLS = {"trial": "the tuner passes each trial", "seed": "use --seed (seed=...) instead"}


def check_task_options(task: Task, options: dict[str, Any]) -> None:
    """Raise a ValueError naming any option that ``task``'s make() does not take (when its signature says),
    before anything is built or trained."""
    for name, why in _PASSED_BY_THE_TOOLS.items():
        if name in options:
            raise ValueError(f"task option {name!r}: not an option ({why})")
    _check_names(task.name, task.make, options)


def check_model_space(task: Task, arguments: list[str]) -> None:
    """Raise a ValueError unless ``task`` can take the module ``arguments`` a search space's ``model``
    section samples: only a LightningCLI config's task builds its module from them, and only from
    arguments the module has."""
    if not arguments:
        return
    if task.lightning_config is None:
        raise ValueError(
            f"search space: model.{arguments[0]}: a model section is for a task given as a LightningCLI config "
            f"(--lightning-config); task {task.name!r} samples its own parameters in make(trial)"
        )
    task.lightning_config.check_model_arguments(arguments)


def _check_names(task: str, make: Callable, options: dict[str, Any]) -> None:
    parameters = inspect.signature(make).parameters  # follows functools.wraps to the undecorated make
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [
        name
        for name, p in parameters.items()
        if name not in _PASSED_BY_THE_TOOLS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        takes = f"its options: {', '.join(known)}" if known else "it takes none"
        raise ValueError(f"Unknown {task} option(s): {', '.join(unknown)} ({takes})")


def named_options(task: str) -> Callable[[Callable], Callable]:
    """Decorate a built-in task's make(): an unknown option raises a ValueError naming every unknown one
    and the options there are (Python's TypeError names only the first), in Python as on the command line."""

    def decorate(make: Callable) -> Callable:
        @functools.wraps(make)
        def make_with_named_options(*args: Any, **options: Any) -> Any:
            _check_names(task, make, options)
            return make(*args, **options)

        return make_with_named_options

    return decorate


def build_seeded(seed: int, build: Callable[[], Any]) -> Any:
    """``build()`` on a private RNG stream: the same seed gives the same weights without touching
    the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
