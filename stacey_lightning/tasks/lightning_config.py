"""A LightningCLI config file as a task: ``stacey-tune --lightning-config config.yaml``.

The file is the one LightningCLI writes (``python main.py fit --print_config > config.yaml``), with
the module and the datamodule in LightningCLI's subclass form::

    seed_everything: 0
    model: {class_path: mynet.Net, init_args: {hidden: 64}}
    data: {class_path: mynet.Data, init_args: {batch_size: 32}}      # optional
    trainer: {max_epochs: 5, gradient_clip_val: 1.0, callbacks: [...], ...}

With the script (``load_lightning_config(path, script)``, ``--lightning-script main.py``), the file is read
with the parser the script's own ``LightningCLI(Model, Data, ...)`` call builds (``tasks.lightning_script``):
``model:`` and ``data:`` may then hold the fixed classes' arguments directly, without ``class_path``, and the
script's ``trainer_defaults`` count as the file's Trainer settings.

It is parsed by LightningCLI's own parser (jsonargparse), so a file LightningCLI accepts is accepted
here and a file it refuses is refused here, in one line naming the file and the key, before any
trial. The classes are imported as LightningCLI imports them; the command-line tools put the current
folder first on the import path, as for ``--task module:callable``.

What each part of the file becomes:

- ``model``, ``data``: each trial builds them with the file's arguments, the way LightningCLI builds
  them, after ``seed_everything(--seed)``. A search space's ``model:`` section samples the module's own
  arguments (trial parameters ``model.<argument>``); they are recorded in ``best.yaml``'s ``task``
  section. A module without StaceyMixin is given it at run time (``lightning.adopt``).
- ``trainer``: the settings the file changes from Lightning's defaults apply to every trial, under
  the tuner's own (its logger and pruning callback, the command line's accelerator, devices and
  strategy); the file's callbacks are built afresh for each trial; ``trainer.max_epochs`` is the
  default of ``--max-epochs``.
- The monitored metric: the ``monitor`` of the file's first ModelCheckpoint or EarlyStopping, its
  ``mode`` giving the direction; without one, ``val_loss`` (minimize), as for any task given by path.
- ``seed_everything`` is not used by the trials (``--seed`` is); ``best_cli.yaml`` sets it to ``--seed``.

After the study, ``write_best_cli`` writes ``<output>/best_cli.yaml``, the second config of
``python main.py fit --config config.yaml --config <output>/best_cli.yaml``: the best trial's seed,
epochs and module arguments, and its Stacey, through ``StaceyReplay`` (a StaceyMixin module: the whole
config, kinds and schedule included) or through LightningCLI's ``optimizer`` injection (any other
module: one param group; the file's header says what that leaves out).
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacey_lightning._imports import import_object
from stacey_lightning._yaml import read_mapping
from stacey_lightning.tasks.best_cli_header import kinds_in_other_norms, plain, replayed_whole, what_differs
from stacey_lightning.tasks.lightning_script import load_lightning_script

__all__ = [
    "LightningConfig",
    "FileCallbacks",
    "is_lightning_config",
    "load_lightning_config",
    "model_values",
    "BEST_CLI",
    "MODEL_PREFIX",
]

BEST_CLI = "best_cli.yaml"
MODEL_PREFIX = "model."  # trial parameters that are the module's own arguments
_SUFFIXES = (".yaml", ".yml")
_REPLAY = "stacey_lightning.lightning.replay.StaceyReplay"
_STACEY = "stacey_lightning.Stacey"
# Trainer settings the tuner owns (logger, callbacks: its own first) or reads as a default (max_epochs).
_TUNER_OWNS = ("logger", "callbacks", "max_epochs")
# What a fit's number of optimizer steps depends on, besides max_epochs and the data.
_STEP_KEYS = ("max_steps", "limit_train_batches", "accumulate_grad_batches", "overfit_batches")


def is_lightning_config(task: Any) -> bool:
    """Whether ``task`` names a LightningCLI config file (a path ending in .yaml or .yml)."""
    return isinstance(task, (str, os.PathLike)) and os.fspath(task).endswith(_SUFFIXES)


def model_values(trial: Any) -> dict[str, Any]:
    """The module arguments a trial sampled (parameters ``model.<argument>``), by argument name.

    A live trial holds them in ``params`` (the search space sampled them before the task is built); a
    ``FixedTrial`` replaying a trial (``stacey-compare --config best.yaml``, plain-DDP followers) holds
    the values it was given until they are suggested, in ``_params``.
    """
    if trial is None:
        return {}
    params = {**getattr(trial, "_params", {}), **trial.params}
    return {name[len(MODEL_PREFIX) :]: value for name, value in params.items() if name.startswith(MODEL_PREFIX)}


@dataclass(frozen=True)
class FileCallbacks:
    """The file's callbacks as ``{class_path, init_args}`` specs: reading the list builds them afresh,
    so that every run gets its own (a ModelCheckpoint or an EarlyStopping keeps state), and the
    Trainer settings that hold them stay picklable for worker processes."""

    specs: tuple[Mapping[str, Any], ...]
    # Callbacks a script's LightningCLI(trainer_defaults={"callbacks": [...]}) adds, copied for every run.
    instances: tuple[Any, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        from lightning.pytorch.cli import instantiate_class

        built = [instantiate_class((), copy.deepcopy(dict(spec))) for spec in self.specs]
        return iter([*copy.deepcopy(list(self.instances)), *built])

    def __len__(self) -> int:
        return len(self.instances) + len(self.specs)


class LightningConfig:
    """A parsed LightningCLI config file; ``load_lightning_config(path)`` makes (and keeps) one per file.

    Attributes:
        path: the file, as given.
        model_class: the module's class; ``has_mixin`` whether it inherits StaceyMixin.
        model_arguments: the module's ``__init__`` arguments (what a space's ``model:`` section may sample).
        trainer_kwargs: the file's Trainer settings that differ from Lightning's defaults, without
            ``logger`` and ``max_epochs``; its callbacks as ``FileCallbacks``.
        max_epochs: the file's ``trainer.max_epochs`` (None when it leaves it out).
        monitor, direction: the file's ModelCheckpoint or EarlyStopping monitor and mode, else
            "val_loss" and "minimize".
    """

    def __init__(self, path: str | os.PathLike, script: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path)
        raw = read_mapping(self.path, "a LightningCLI config (model, data, trainer, ...)")
        self.script = None if script is None else load_lightning_script(script)
        self._parser = _parser() if self.script is None else self.script.fit_parser()
        # LightningCLI(Model, ...) reads the module's arguments directly under model:, without class_path.
        self._fixed_model = self.script is not None and not self.script.subclass_mode("model")
        self._config = self._parse(raw)
        if self._fixed_model:
            self.model_class = self.script.model_class
            self._model_arguments = self._config.model
        else:
            self.model_class = import_object(self._config.model.class_path, what=f"{self.path}: model.class_path")
            self._model_arguments = self._config.model.init_args
        from stacey_lightning.lightning.mixin import StaceyMixin

        self.has_mixin = issubclass(self.model_class, StaceyMixin)
        self.model_arguments = tuple(self._model_arguments.as_dict()) if self._model_arguments else ()
        trainer = self._config.trainer.as_dict()
        self.max_epochs = trainer.get("max_epochs")
        self._callback_specs = tuple(_as_list(trainer.get("callbacks")))
        written = (raw.get("trainer") or {}).get("callbacks") or []  # as the user wrote them, for best_cli.yaml
        self._raw_callbacks = copy.deepcopy(written if isinstance(written, list) else [written])
        self.monitor, self.direction = self._monitor()
        self.trainer_kwargs = self._trainer_kwargs(trainer)

    @property
    def name(self) -> str:
        """The study's default name: the module's class name."""
        return self.model_class.__name__

    def make(self, trial: Any = None) -> tuple[Any, Any]:
        """(module, datamodule or None), built as LightningCLI builds them, with the module arguments the
        trial sampled (``model_values``) over the file's. The caller seeds first (``run.build``)."""
        from jsonargparse import Namespace

        config = copy.deepcopy(self._config)
        arguments = config.model if self._fixed_model else config.model.init_args
        for name, value in model_values(trial).items():
            if name not in self.model_arguments:
                raise ValueError(
                    f"{MODEL_PREFIX}{name}: not an argument of {self.model_class.__name__} "
                    f"(its arguments: {', '.join(self.model_arguments) or 'none'})"
                )
            arguments[name] = value
        parts = Namespace(model=config.model, data=config.get("data"))
        instantiate = getattr(self._parser, "instantiate", None) or self._parser.instantiate_classes  # renamed in 4.49
        built = instantiate(parts)
        return built.model, built.get("data")

    def check_model_arguments(self, names: list[str]) -> None:
        """A ValueError naming the first of ``names`` (arguments a search space samples) that the
        module does not take."""
        for name in names:
            if name not in self.model_arguments:
                raise ValueError(
                    f"search space: {MODEL_PREFIX}{name}: not an argument of {_qualified(self.model_class)} "
                    f"(its arguments: {', '.join(self.model_arguments) or 'none'})"
                )

    def write_best_cli(
        self,
        output_dir: str | os.PathLike,
        *,
        stacey_config: Mapping[str, Any],
        params: Mapping[str, Any],
        value: float,
        number: int,
        seed: int,
        max_epochs: int,
        monitor: str,
    ) -> Path:
        """Write ``output_dir/best_cli.yaml`` for the best trial (its number, final ``value``, Stacey
        config and parameters) and return its path; prints the command that trains it."""
        from stacey_lightning.lightning.config import StaceyConfig

        config = StaceyConfig.from_source(dict(stacey_config))
        values = model_values(_Params(params))
        replay = {"config": config.to_dict(), "monitor": monitor, "expected": float(value)}
        content: dict[str, Any] = {"seed_everything": seed, "trainer": {"max_epochs": max_epochs}}
        if values and self._fixed_model:
            content["model"] = values  # LightningCLI(Model, ...) reads the module's arguments directly
        elif values:
            content["model"] = {"class_path": self._config.model.class_path, "init_args": values}
        header = [f"best trial #{number}: {monitor} = {value:.6g} (seed {seed}, {max_epochs} epochs)"]
        apart = kinds_in_other_norms(config)
        if self.has_mixin or apart or config.average_horizon is not None:
            content["optimizer"] = None
            if not self.has_mixin:
                header += replayed_whole(apart, config.norm, config.average_horizon, self.model_class.__name__)
        else:
            finite = config.tau_horizon is not None and math.isfinite(config.tau_horizon)
            steps = self._total_steps(values, seed, max_epochs) if finite else math.inf
            content["optimizer"] = {"class_path": _STACEY, "init_args": plain(config.optimizer_arguments(steps))}
            header += what_differs(config, steps, self.model_class.__name__)
        content["lr_scheduler"] = None
        callbacks = [*self._raw_callbacks, {"class_path": _REPLAY, "init_args": replay}]
        content["trainer"]["callbacks"] = callbacks
        path = Path(output_dir) / BEST_CLI
        script = self.script.path if self.script is not None else "main.py"
        command = f"python {script} fit --config {self.path} --config {path}"
        lines = [*header, "Train it again with your LightningCLI script, this file after your own:", f"  {command}"]
        path.write_text("".join(f"# {line}\n" for line in lines) + yaml.safe_dump(content, sort_keys=False))
        print(f"[stacey-tune] LightningCLI config written to {path}: {command}", flush=True)
        return path

    def _parse(self, raw: Mapping[str, Any]) -> Any:
        from jsonargparse import ArgumentError

        for section in ("model", "data"):
            spec = raw.get(section)
            if self.script is not None and not self.script.subclass_mode(section):
                self._check_fixed_arguments(section, spec)
                continue
            if section == "model" and spec is None:
                raise ValueError(f"{self.path}: model: missing (model: {{class_path: package.Module, init_args: ...}})")
            if spec is not None and not (isinstance(spec, Mapping) and "class_path" in spec):
                if self.script is None:
                    raise ValueError(
                        f"{self.path}: {section}.class_path: missing; a config of LightningCLI(Model, Data) names "
                        "no classes: pass its script too, --lightning-script main.py (else write "
                        f"{section}: {{class_path: package.Class, init_args: {{...}}}}, LightningCLI's subclass form)"
                    )
                raise ValueError(
                    f"{self.path}: {section}.class_path: missing; {self.script.path} reads {section} in subclass "
                    f"mode: write {section}: {{class_path: package.Class, init_args: {{...}}}}"
                )
            if spec is not None:
                self._check_init_args(section, spec)
        self._check_trainer_keys(raw.get("trainer") or {})
        try:
            return self._parser.parse_args(["--config", self.path])
        except ArgumentError as error:
            raise ValueError(f"{self.path}: {_condensed(str(error))}") from None

    def _check_init_args(self, section: str, spec: Mapping[str, Any]) -> None:
        cls = import_object(str(spec["class_path"]), what=f"{self.path}: {section}.class_path")
        self._check_names(f"{section}.init_args", cls, spec.get("init_args") or {}, spec["class_path"])

    def _check_fixed_arguments(self, section: str, spec: Any) -> None:
        """The arguments under ``section`` of LightningCLI(Model, Data): the fixed class's, without class_path."""
        cls = self.script.model_class if section == "model" else self.script.datamodule_class
        if spec is None:
            return
        if not isinstance(spec, Mapping):
            raise ValueError(f"{self.path}: {section}: expected the arguments of {cls.__name__}, got {spec!r}")
        if "class_path" in spec:
            raise ValueError(
                f"{self.path}: {section}.class_path: {self.script.path} fixes {section} to {cls.__name__} "
                f"(subclass_mode_{'model' if section == 'model' else 'data'}=False): write its arguments directly"
            )
        self._check_names(section, cls, spec, _qualified(cls))

    def _check_names(self, key: str, cls: Any, arguments: Mapping[str, Any], class_name: str) -> None:
        parameters = inspect.signature(cls.__init__).parameters
        if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return
        known = [name for name in parameters if name != "self"]
        for name in arguments:
            if name not in parameters:
                raise ValueError(
                    f"{self.path}: {key}.{name}: not an argument of {class_name} "
                    f"(its arguments: {', '.join(known) or 'none'})"
                )

    def _check_trainer_keys(self, trainer: Any) -> None:
        from lightning.pytorch import Trainer

        if not isinstance(trainer, Mapping):
            raise ValueError(f"{self.path}: trainer: expected a mapping of Trainer arguments, got {trainer!r}")
        parameters = inspect.signature(Trainer.__init__).parameters
        for key in trainer:
            if key not in parameters:
                raise ValueError(f"{self.path}: trainer.{key}: not an argument of lightning.pytorch.Trainer")

    def _monitor(self) -> tuple[str, str]:
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        defaults = self.script.trainer_default_callbacks() if self.script is not None else []
        for callback in defaults:  # LightningCLI puts them first
            if isinstance(callback, (ModelCheckpoint, EarlyStopping)) and callback.monitor:
                return callback.monitor, "maximize" if callback.mode == "max" else "minimize"
        for spec in self._callback_specs:
            init_args = spec.get("init_args") or {}
            cls = import_object(spec["class_path"], what=f"{self.path}: trainer.callbacks")
            if issubclass(cls, (ModelCheckpoint, EarlyStopping)) and init_args.get("monitor"):
                mode = init_args.get("mode", "min")
                return init_args["monitor"], "maximize" if mode == "max" else "minimize"
        return "val_loss", "minimize"

    def _trainer_kwargs(self, trainer: dict[str, Any]) -> dict[str, Any]:
        from lightning.pytorch import Trainer
        from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
        from lightning.pytorch.cli import instantiate_class

        defaults = {name: p.default for name, p in inspect.signature(Trainer.__init__).parameters.items()}
        kwargs = {
            key: _built(value, instantiate_class)
            for key, value in trainer.items()
            if key not in _TUNER_OWNS and key in defaults and value != defaults[key]
        }
        # A trial shows one line, not a progress bar; Lightning refuses a bar callback without one.
        classes = [
            import_object(spec["class_path"], what=f"{self.path}: trainer.callbacks") for spec in self._callback_specs
        ]
        specs = tuple(spec for spec, cls in zip(self._callback_specs, classes) if not issubclass(cls, ProgressBar))
        # Last, as in best_cli.yaml: trials re-seed where LightningCLI's fit of the best one will.
        defaults = self.script.trainer_default_callbacks() if self.script is not None else []
        instances = tuple(callback for callback in defaults if not isinstance(callback, ProgressBar))
        kwargs["callbacks"] = FileCallbacks((*specs, {"class_path": _REPLAY, "init_args": {}}), instances)
        if any(issubclass(cls, ModelCheckpoint) for cls in classes) or any(
            isinstance(callback, ModelCheckpoint) for callback in instances
        ):
            kwargs.setdefault("enable_checkpointing", True)  # the tuner's default (False) refuses one
        return kwargs

    def _total_steps(self, values: Mapping[str, Any], seed: int, max_epochs: int) -> float:
        """The optimizer steps of a fit of ``max_epochs`` on one device: what tau_horizon is relative to."""
        from lightning.pytorch import Callback, Trainer, seed_everything

        class _Counted(Exception):
            pass

        class _Count(Callback):
            def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
                raise _Counted(trainer.estimated_stepping_batches)

        seed_everything(seed, workers=True, verbose=False)
        module, datamodule = self.make(_Params({MODEL_PREFIX + name: value for name, value in values.items()}))
        settings = {key: self.trainer_kwargs[key] for key in _STEP_KEYS if key in self.trainer_kwargs}
        trainer = Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=max_epochs,
            logger=False,
            callbacks=[_Count()],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            **settings,
        )
        try:
            trainer.fit(module, datamodule=datamodule)
        except _Counted as counted:
            return float(counted.args[0])
        raise RuntimeError("the fit that counts the optimizer steps did not start")


def load_lightning_config(path: str | os.PathLike, script: str | os.PathLike | None = None) -> LightningConfig:
    """The parsed file at ``path``, read with the LightningCLI of ``script`` if given (``LightningCLI(Model,
    Data)``'s config names no classes; see ``tasks.lightning_script``), else as ``LightningCLI()`` reads it;
    parsed once per process and version of the files."""
    if importlib.util.find_spec("jsonargparse") is None:  # LightningCLI's own parser, an optional dependency
        raise ValueError(
            f"{os.fspath(path)}: reading a LightningCLI config needs jsonargparse, as LightningCLI does: "
            "pip install 'stacey-lightning[cli]' (or 'lightning[pytorch-extra]')"
        )
    try:
        key = (os.path.abspath(path), os.stat(path).st_mtime_ns)
    except OSError as error:
        raise ValueError(f"{os.fspath(path)}: cannot read the LightningCLI config ({error.strerror})") from None
    if script is not None:
        try:
            key += (os.path.abspath(script), os.stat(script).st_mtime_ns)
        except OSError as error:
            raise ValueError(f"{os.fspath(script)}: cannot read the LightningCLI script ({error.strerror})") from None
    if key not in _LOADED:
        _LOADED[key] = LightningConfig(path, script)
    return _LOADED[key]


_LOADED: dict[tuple, LightningConfig] = {}


@dataclass(frozen=True)
class _Params:
    """Trial parameters as ``model_values`` reads them."""

    params: Mapping[str, Any]


def _parser() -> Any:
    """LightningCLI's parser of ``fit``'s config, as ``LightningCLI()`` (subclass mode) builds it."""
    from jsonargparse import ActionConfigFile
    from lightning.pytorch import LightningDataModule, LightningModule, Trainer
    from lightning.pytorch.cli import LightningArgumentParser, LRSchedulerTypeTuple
    from torch.optim import Optimizer

    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_argument("-c", "--config", action=ActionConfigFile)
    parser.add_argument("--seed_everything", type=bool | int, default=True)
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.add_lightning_class_args(LightningModule, "model", subclass_mode=True)
    parser.add_lightning_class_args(LightningDataModule, "data", subclass_mode=True, required=False)
    parser.add_optimizer_args((Optimizer,))
    parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
    parser.add_argument("--ckpt_path", type=str | None, default=None)
    parser.add_argument("--weights_only", type=bool | None, default=None)
    return parser


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _condensed(message: str) -> str:
    """jsonargparse's error as ``key: what is wrong``, on one line."""
    lines = [line.strip().removeprefix("- ") for line in message.splitlines() if line.strip()]
    keys = re.findall(r'Parser key "([^"]+)"', message)
    option = next((line for line in lines if re.fullmatch(r"Option '.+' is not accepted", line)), None)
    if not keys:
        name = re.fullmatch(r"Option '(.+)' is not accepted", lines[0]) if lines else None
        return f"{name.group(1)}: not a key of LightningCLI's fit config" if name else " ".join(lines)
    key = ".init_args.".join(keys)
    reason = option or next(
        (line for line in lines if "Got value" in line or "has no attribute" in line or "No module named" in line),
        None,
    )
    if reason is None:
        given = next((line.removeprefix("Given value: ") for line in lines if line.startswith("Given value: ")), None)
        reason = f"{given!r} is not accepted" if given is not None else lines[-1]
    return f"{key}: {reason}"


def _as_list(callbacks: Any) -> list[dict[str, Any]]:
    if callbacks is None:
        return []
    return [dict(spec) for spec in (callbacks if isinstance(callbacks, list) else [callbacks])]


def _built(value: Any, instantiate_class: Any) -> Any:
    """A Trainer setting with its ``{class_path, init_args}`` specs (a strategy, plugins) built."""
    if isinstance(value, Mapping) and "class_path" in value:
        return instantiate_class((), dict(value))
    if isinstance(value, list):
        return [_built(item, instantiate_class) for item in value]
    return value
