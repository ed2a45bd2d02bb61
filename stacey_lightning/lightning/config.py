"""``StaceyConfig``: the one description of a Stacey setup, shared by the mixin, the tuner and YAML files.

A config is a flat mapping (keys and defaults below), read from a dict, a ``StaceyConfig`` or a YAML
file such as the tuner's ``best.yaml``::

    lr: 0.01            # primal step eta
    p: 4.0              # float > 1, or .inf / "inf"
    alpha: 0.1          # dual step
    tau: 0.01
    betas: [0.9, 0.99]
    weight_decay: 0.0
    eps: 1.0e-8
    variant: p2         # or pp
    norm: lp            # every kind's norm unless kinds say otherwise: lp, or adam (Adam's geometry)
    beta_v: 0.95        # the second moment's coefficient in Adam's geometry (AdamW's beta2)
    kinds:              # optional per-kind overrides: p, lr_scale, weight_decay, norm
      matrix: {p: 3.0, lr_scale: 1.0, weight_decay: 0.01}
      conv: {norm: spectral}   # lp, adam or spectral: Muon's geometry (not for vectors)
    schedule:           # optional; default {name: constant}
      name: warmup_cosine   # or constant, or a torch.optim.lr_scheduler class path plus its kwargs
      warmup_fraction: 0.05 # or warmup_steps: N
      min_lr_ratio: 0.0
    task:               # optional, ignored by the optimizer: what the tuned task's make() sampled
      hidden: 96        # (the tuner's best.yaml has it; stacey-compare --config hands it back to make)
    checkpoint:         # optional, ignored: the tuner's best.yaml names the best trial's model
      path: best.ckpt   # (relative to the file's folder) and its trial
      trial: 7

Every value is checked when the config is read, and a bad one raises a ValueError that names the key
(and the file) and says what is allowed.

This dataclass is the one list of Stacey's hyperparameters: the mixin, the search spaces, the tuner's
tables and the reports take their names (``HYPERPARAMETERS``, ``KIND_KEYS``) and their checks
(``check_value``) from here.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from stacey_lightning._imports import import_object
from stacey_lightning._yaml import read_mapping
from stacey_lightning.optim.optimizer import BETA_V, ELEMENTWISE_NORMS, NORMS, check_hyperparameters

__all__ = [
    "StaceyConfig",
    "HYPERPARAMETERS",
    "OPTIMIZER_ARGUMENTS",
    "RUN_HORIZONS",
    "tau_for_horizon",
    "KINDS",
    "KIND_KEYS",
    "SCHEDULES",
    "TASK_SECTION",
    "CHECKPOINT_SECTION",
    "CONFIRMATION_SECTION",
    "ConfigSource",
    "scheduler_class",
    "read_number",
    "task_params",
]

KINDS = ("matrix", "conv", "embedding", "vector")
KIND_KEYS = ("p", "lr_scale", "weight_decay", "norm")
SCHEDULES = ("constant", "warmup_cosine")
TASK_SECTION = "task"
CHECKPOINT_SECTION = "checkpoint"  # in the tuner's best.yaml: {path: best.ckpt, trial: n}; not the optimizer's
# In the tuner's best.yaml: the winner's metric over the seeds it was confirmed on {values, failed, mean, std}.
CONFIRMATION_SECTION = "confirmation"


def read_number(value: Any, key: str) -> float:
    """A number from YAML or Python, p = inf included: the one reader of numbers in configs and spaces.

    Strings are accepted because YAML 1.1 reads "1e-3" (no dot) as a string, our files write p = inf
    as "inf", and YAML's own spelling ".inf" arrives as a string when quoted. Booleans (which Python
    counts as ints) and nan are refused with a ValueError naming ``key``.
    """
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            number = float(text.replace(".inf", "inf") if text.lstrip("+-") == ".inf" else text)
        except ValueError:
            pass
    if number is None or math.isnan(number):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return number


def _yaml_float(value: float) -> float | str:
    """p = inf is written as the string "inf" so that every YAML reader and JSON can hold it."""
    return "inf" if value == math.inf else value


@dataclass
class StaceyConfig:
    """Stacey's hyperparameters, per-kind overrides and the learning-rate schedule.

    Attributes:
        lr: primal step eta. Default 0.01.
        p: exponent of the primal norm, > 1 or ``math.inf``. Default 4.
        alpha: dual step at the initial lr. Default 0.1.
        tau: interpolation between the dual iterate and the primal step, in [0, 1]. Default 0.01.
        betas: (beta1, beta2). Default (0.9, 0.99).
        weight_decay: decoupled weight decay lambda. Default 0 (vectors get 0 unless ``kinds`` says
            otherwise, see param_groups).
        eps: inside the power's base of the l_p direction. Default 1e-8.
        variant: "p2" or "pp". Default "p2".
        tau_follows_lr: scale tau with the schedule's lr, as alpha is (see ``Stacey``). Default False.
        tau_horizon: when set, tau is chosen for the run instead: tau = 1 / (tau_horizon * T), T the
            optimizer steps of the fit (``trainer.estimated_stepping_batches``). It is the horizon of
            x's pull towards z in runs: 1 means one e-fold over the whole run, inf means tau = 0. A
            tuned tau_horizon carries over to runs of other lengths. Default None (use tau).
        average_horizon: when set, the run keeps an exponential moving average of the weights over the
            last ``average_horizon`` of its steps (decay 1 - 1 / (average_horizon * T), T as for tau_horizon)
            and is evaluated, and saved, there (``Stacey``'s ``average_decay``; ``StaceyMixin`` switches to it
            where Lightning evaluates). 0.1: over about the last tenth of the run. Default None (none).
        norm: the norm of every kind that ``kinds`` gives none, the output head's included: "lp" (default)
            or "adam" (Adam's diagonal geometry, d = c_hat / (sqrt(v_hat) + eps); p is then unused and lr
            is AdamW's: see ``Stacey``).
        beta_v: the second moment's coefficient in Adam's geometry. Default 0.95.
        kinds: per-kind overrides, ``{kind: {p, lr_scale, weight_decay, norm}}`` with kind one of
            matrix, conv, embedding, vector; ``lr_scale`` multiplies lr for that kind (default 1);
            ``norm`` is "lp", "adam" or "spectral" (the kind's matrices move along msign(c), as in
            Muon; p is then unused, and the output head takes the global ``norm``: see param_groups);
            by default the global ``norm``.
        schedule: ``{"name": "constant"}`` (default), ``{"name": "warmup_cosine", "warmup_fraction"
            or "warmup_steps", "min_lr_ratio"}`` or ``{"name": "<scheduler class path>", **kwargs}``.
    """

    lr: float = 1e-2
    p: float = 4.0
    alpha: float = 0.1
    tau: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    eps: float = 1e-8
    variant: str = "p2"
    tau_follows_lr: bool = False
    tau_horizon: float | None = None
    average_horizon: float | None = None
    norm: str = "lp"
    beta_v: float = BETA_V
    kinds: dict[str, dict[str, float]] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=lambda: {"name": "constant"})

    @classmethod
    def from_source(cls, source: ConfigSource, defaults: StaceyConfig | None = None) -> StaceyConfig:
        """Read and validate a config.

        Args:
            source: a ``StaceyConfig`` (taken whole), a mapping, or the path of a YAML file holding a
                mapping. Keys a mapping leaves out come from ``defaults``.
            defaults: where missing keys come from; the documented defaults when None.

        Raises:
            ValueError: naming the key (and the file) of an unknown key or a bad value.
        """
        if isinstance(source, StaceyConfig):
            return cls._validated(source.to_dict(), "StaceyConfig")
        if isinstance(source, (str, os.PathLike)):
            where = f"file {os.fspath(source)!r}"
            mapping = read_mapping(source, "a Stacey config")
        else:
            where = "config"
            mapping = source
        if not isinstance(mapping, Mapping):
            raise ValueError(f"Stacey {where}: expected a mapping of keys to values, got {type(mapping).__name__}")
        merged = (defaults or cls()).to_dict()
        sections = (TASK_SECTION, CHECKPOINT_SECTION, CONFIRMATION_SECTION)
        merged.update(copy.deepcopy({key: value for key, value in mapping.items() if key not in sections}))
        return cls._validated(merged, where)

    @classmethod
    def check_value(cls, key: str, value: Any) -> None:
        """Raise a ValueError unless ``value`` is allowed for ``key``, one of HYPERPARAMETERS,
        "beta1", "beta2", or "kinds.<kind>.<key>"; the message says what is allowed."""
        if key in ("beta1", "beta2"):
            betas = [value, 0.5] if key == "beta1" else [0.5, value]
            cls._parse({**cls().to_dict(), "betas": betas})
            return
        if key.startswith("kinds."):
            _, kind, name = key.split(".", 2)
            cls._parse({**cls().to_dict(), "kinds": {kind: {name: value}}})
            return
        if key not in HYPERPARAMETERS:
            raise ValueError(f"unknown key {key!r} (allowed keys: {', '.join(HYPERPARAMETERS)}, kinds)")
        cls._parse({**cls().to_dict(), key: value})

    @classmethod
    def _validated(cls, mapping: dict[str, Any], where: str) -> StaceyConfig:
        try:
            return cls._parse(mapping)
        except ValueError as error:
            raise ValueError(f"Invalid Stacey {where}: {error}") from None

    @classmethod
    def _parse(cls, mapping: dict[str, Any]) -> StaceyConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(mapping) - set(names), key=str)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r} (allowed keys: {', '.join(names)})")
        values = {key: read_number(mapping[key], key) for key in _FLOAT_KEYS}
        betas = mapping["betas"]
        if not isinstance(betas, (list, tuple)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair [beta1, beta2], got {betas!r}")
        values["betas"] = tuple(read_number(beta, f"betas[{index}]") for index, beta in enumerate(betas))
        values["variant"] = mapping["variant"]
        values["tau_follows_lr"] = mapping["tau_follows_lr"]
        values["norm"] = _read_norm(mapping["norm"], None)
        horizon = mapping["tau_horizon"]
        values["tau_horizon"] = None if horizon is None else read_number(horizon, "tau_horizon")
        if values["tau_horizon"] is not None and not values["tau_horizon"] > 0:
            raise ValueError(f"tau_horizon: {horizon!r} must be > 0 (.inf for tau = 0), or null to use tau")
        average = mapping["average_horizon"]
        values["average_horizon"] = None if average is None else read_number(average, "average_horizon")
        if values["average_horizon"] is not None and not 0 < values["average_horizon"] < math.inf:
            raise ValueError(f"average_horizon: {average!r} must be > 0 and finite, or null for no average")
        _check_optimizer_values({key: value for key, value in values.items() if key not in RUN_HORIZONS}, "")
        values["kinds"] = _parse_kinds(mapping["kinds"], values)
        values["schedule"] = _parse_schedule(mapping["schedule"])
        return cls(**values)

    def optimizer_arguments(self, total_steps: float = math.inf) -> dict[str, Any]:
        """Stacey's keyword arguments for a run of ``total_steps`` optimizer steps, tau resolved from
        tau_horizon and the average's decay from average_horizon when they are set (which needs a finite
        ``total_steps``)."""
        arguments = {name: getattr(self, name) for name in OPTIMIZER_ARGUMENTS}
        if self.tau_horizon is not None:
            arguments["tau"] = tau_for_horizon(self.tau_horizon, total_steps)
        if self.average_horizon is not None:
            arguments["average_decay"] = 1.0 - tau_for_horizon(self.average_horizon, total_steps, "average_horizon")
        return arguments

    def to_dict(self) -> dict[str, Any]:
        """The plain, YAML-safe mapping (betas as a list, p = inf as "inf"); ``from_source`` reads it back."""
        return {
            "lr": self.lr,
            "p": _yaml_float(self.p),
            "alpha": self.alpha,
            "tau": self.tau,
            "betas": list(self.betas),
            "weight_decay": self.weight_decay,
            "eps": self.eps,
            "variant": self.variant,
            "tau_follows_lr": self.tau_follows_lr,
            "tau_horizon": None if self.tau_horizon is None else _yaml_float(self.tau_horizon),
            "average_horizon": self.average_horizon,
            "norm": self.norm,
            "beta_v": self.beta_v,
            "kinds": {
                kind: {key: _yaml_float(value) for key, value in overrides.items()}
                for kind, overrides in self.kinds.items()
            },
            "schedule": copy.deepcopy(self.schedule),
        }


ConfigSource = StaceyConfig | Mapping[str, Any] | str | os.PathLike

# Stacey's hyperparameters in the order the class lists them (what the mixin reads from saved
# hyperparameters), and those that are numbers.
HYPERPARAMETERS = tuple(f.name for f in dataclasses.fields(StaceyConfig) if f.name not in ("kinds", "schedule"))
# In runs: resolved for a run of T steps, tau_horizon into tau and average_horizon into average_decay.
RUN_HORIZONS = ("tau_horizon", "average_horizon")
# Those the optimizer takes as arguments.
OPTIMIZER_ARGUMENTS = tuple(name for name in HYPERPARAMETERS if name not in RUN_HORIZONS)
_FLOAT_KEYS = tuple(f.name for f in dataclasses.fields(StaceyConfig) if f.type == "float")


def tau_for_horizon(horizon: float, total_steps: float, key: str = "tau_horizon") -> float:
    """1 / (horizon * total_steps), at most 1; 0 for an infinite horizon: tau, or one minus the average's
    decay (``key`` names the setting in the error)."""
    if horizon == math.inf:
        return 0.0
    if not math.isfinite(total_steps) or total_steps < 1:
        raise ValueError(
            f"{key} needs the run's number of optimizer steps: set max_epochs or max_steps on the "
            "Trainer, and build the optimizer inside fit (configure_optimizers)"
        )
    return min(1.0, 1.0 / (horizon * total_steps))


def task_params(source: ConfigSource) -> dict[str, Any]:
    """The ``task`` section of a config mapping or YAML file (the task's own sampled parameters), or {}."""
    if isinstance(source, (str, os.PathLike)):
        source = read_mapping(source, "a Stacey config")
    section = source.get(TASK_SECTION) if isinstance(source, Mapping) else None
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ValueError(f"{TASK_SECTION}: expected a mapping of the task's parameters, got {section!r}")
    return dict(section)


def _check_optimizer_values(values: dict[str, Any], prefix: str) -> None:
    """The optimizer's own checks, so that a config is refused exactly when Stacey would refuse it."""
    try:
        check_hyperparameters({**values, "foreach": None, "fused": None})
    except ValueError as error:
        raise ValueError(f"{prefix}{error}") from None


def _parse_kinds(kinds: Any, values: dict[str, Any]) -> dict[str, dict[str, float]]:
    if kinds is None:
        return {}
    if not isinstance(kinds, Mapping):
        raise ValueError(f"kinds: expected a mapping of kind to overrides, got {kinds!r}")
    parsed = {}
    for kind, overrides in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"kinds: unknown kind {kind!r} (choose from {', '.join(KINDS)})")
        if not isinstance(overrides, Mapping):
            raise ValueError(
                f"kinds.{kind}: expected a mapping with keys from {', '.join(KIND_KEYS)}, got {overrides!r}"
            )
        for key in overrides:
            if key not in KIND_KEYS:
                raise ValueError(f"kinds.{kind}: unknown key {key!r} (allowed keys: {', '.join(KIND_KEYS)})")
        parsed[kind] = {
            key: _read_norm(value, kind) if key == "norm" else read_number(value, f"kinds.{kind}.{key}")
            for key, value in overrides.items()
        }
        if parsed[kind].get("lr_scale", 1.0) < 0:
            raise ValueError(f"kinds.{kind}.lr_scale: {parsed[kind]['lr_scale']!r} must be >= 0")
        group = {**values, **{key: value for key, value in parsed[kind].items() if key != "lr_scale"}}
        _check_optimizer_values(group, f"kinds.{kind}: ")
    return parsed


def _read_norm(value: Any, kind: str | None) -> str:
    """A kind's norm (any of NORMS but the spectral one for vectors), or the global one (kind None): an
    elementwise norm, which every kind and the output head can step in."""
    key = "norm" if kind is None else f"kinds.{kind}.norm"
    if value not in NORMS:
        raise ValueError(f"{key}: {value!r} is not a norm (choose one of {', '.join(NORMS)})")
    if kind is None and value not in ELEMENTWISE_NORMS:
        raise ValueError(
            f"norm: {value!r} needs matrices, so it is a kind's norm (kinds: {{matrix: {{norm: {value}}}}}); "
            f"the global norm is one of {', '.join(ELEMENTWISE_NORMS)}"
        )
    if value == "spectral" and kind == "vector":
        raise ValueError("kinds.vector.norm: 'spectral' needs matrices; vectors take norm 'lp' or 'adam'")
    return value


def _parse_schedule(schedule: Any) -> dict[str, Any]:
    if schedule is None:
        return {"name": "constant"}
    if not isinstance(schedule, Mapping) or "name" not in schedule:
        raise ValueError(f"schedule: expected a mapping with a 'name' key, got {schedule!r}")
    schedule = dict(schedule)
    name = schedule["name"]
    options = {key: value for key, value in schedule.items() if key != "name"}
    if name == "constant":
        if options:
            raise ValueError(f"schedule: the constant schedule takes no options, got {sorted(options)}")
    elif name == "warmup_cosine":
        _check_warmup_cosine(options)
        for key in ("warmup_fraction", "min_lr_ratio"):
            if key in schedule:
                schedule[key] = float(schedule[key])
    elif isinstance(name, str) and "." in name:
        _check_scheduler_class(name, options)
    else:
        raise ValueError(
            f"schedule.name: {name!r} is neither one of {', '.join(SCHEDULES)} nor a scheduler "
            "class path such as torch.optim.lr_scheduler.StepLR"
        )
    return schedule


def _check_warmup_cosine(options: dict[str, Any]) -> None:
    allowed = ("warmup_fraction", "warmup_steps", "min_lr_ratio")
    for key in options:
        if key not in allowed:
            raise ValueError(f"schedule: unknown key {key!r} for warmup_cosine (allowed keys: {', '.join(allowed)})")
    if "warmup_fraction" in options and "warmup_steps" in options:
        raise ValueError("schedule: give warmup_fraction or warmup_steps, not both")
    if (
        "warmup_fraction" in options
        and not 0.0 <= read_number(options["warmup_fraction"], "schedule.warmup_fraction") <= 1.0
    ):
        raise ValueError(f"schedule.warmup_fraction: {options['warmup_fraction']!r} must be in [0, 1]")
    if "warmup_steps" in options:
        steps = options["warmup_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"schedule.warmup_steps: {steps!r} must be an integer >= 0")
    if "min_lr_ratio" in options and not 0.0 <= read_number(options["min_lr_ratio"], "schedule.min_lr_ratio") <= 1.0:
        raise ValueError(f"schedule.min_lr_ratio: {options['min_lr_ratio']!r} must be in [0, 1]")


def scheduler_class(path: str) -> type:
    """The scheduler class at "package.module.Class"; a ValueError naming the path if there is none."""
    found = import_object(path, what="schedule.name")
    if not (inspect.isclass(found) and issubclass(found, torch.optim.lr_scheduler.LRScheduler)):
        raise ValueError(f"schedule.name: {path!r} is not a torch.optim.lr_scheduler.LRScheduler subclass")
    return found


def _check_scheduler_class(path: str, options: dict[str, Any]) -> None:
    try:
        inspect.signature(scheduler_class(path)).bind(None, **options)
    except TypeError as error:
        raise ValueError(f"schedule: options {sorted(options)} do not fit {path} ({error})") from None
