"""``SearchSpace``: the distributions a study samples Stacey's hyperparameters from.

A space is read from a preset name ("default", "vision", "language"; see the ``search_spaces``
package) or from the path of a YAML file, and is validated completely before any trial runs.
Format (each value a distribution; a plain value means "fixed")::

    p: {distribution: p_exponent, low: 2.0, high: .inf}    # r = 1/(p-1) uniform in [1/(high-1), 1/(low-1)]
    lr: {distribution: log_uniform, low: 1.0e-3, high: 1.0e-1}
    alpha: {distribution: log_uniform, low: 1.0e-3, high: 1.0}
    tau: {distribution: uniform, low: 0.0, high: 0.2}
    betas: {beta1: {distribution: uniform, low: 0.8, high: 0.95}, beta2: 0.99}   # or a fixed [b1, b2]
    weight_decay: {distribution: fixed, value: 0.0}
    variant: {distribution: categorical, choices: [p2, pp]}
    kinds: {matrix: {p: {distribution: p_exponent, low: 2, high: 8}, lr_scale: 1.0}}
    schedule: {name: warmup_cosine, warmup_fraction: 0.05}  # passed through to the config, not tuned
    eps: 1.0e-8                                              # fixed only

``suggest(trial)`` returns a Stacey config dict (the contract of ``StaceyConfig``). Trial parameter
names are the keys (``lr``, ``alpha``, ``tau``, ``beta1``, ``beta2``, ``weight_decay``, ``variant``,
``kinds.<kind>.<key>``), except that p is sampled as ``r`` (``kinds.<kind>.r``), so the geometry
from p = 2 (r = 1) to p = inf (r = 0) is covered evenly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["SearchSpace", "SearchSpaceError", "Distribution", "DISTRIBUTIONS"]

DISTRIBUTIONS = ("uniform", "log_uniform", "categorical", "fixed", "p_exponent")
_TOP_KEYS = ("p", "lr", "alpha", "tau", "betas", "weight_decay", "eps", "variant", "kinds", "schedule")
_BETA_KEYS = ("beta1", "beta2")
_KINDS = ("matrix", "conv", "embedding", "vector")
_KIND_KEYS = ("p", "lr_scale", "weight_decay")
# Allowed ranges per hyperparameter: (lowest, highest, whether the highest is excluded).
_BOUNDS = {
    "lr": (0.0, math.inf, False),
    "alpha": (0.0, math.inf, False),
    "tau": (0.0, 1.0, False),
    "beta": (0.0, 1.0, True),
    "weight_decay": (0.0, math.inf, False),
    "lr_scale": (0.0, math.inf, False),
    "eps": (0.0, math.inf, False),
}


class SearchSpaceError(ValueError):
    """A search space that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Distribution:
    """One hyperparameter's distribution. ``kind`` is one of DISTRIBUTIONS."""

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    value: Any = None

    def sample(self, trial, name: str) -> Any:
        """Draw from ``trial`` under the parameter ``name`` (nothing is drawn for a fixed value)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "uniform":
            return trial.suggest_float(name, self.low, self.high)
        if self.kind == "log_uniform":
            return trial.suggest_float(name, self.low, self.high, log=True)
        r = trial.suggest_float(_r_name(name), *self.r_range())
        return math.inf if r == 0.0 else 1.0 + 1.0 / r

    def r_range(self) -> tuple[float, float]:
        """For p_exponent: the interval of r = 1/(p-1); r = 0 stands for p = inf."""
        return (0.0 if self.high == math.inf else 1.0 / (self.high - 1.0)), 1.0 / (self.low - 1.0)

    def extremes(self) -> list:
        """The values at the ends of the range (every choice for categorical), for validation."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]


def _r_name(name: str) -> str:
    return name[:-1] + "r" if name.endswith("p") else "r"


class SearchSpace:
    """A validated search space. Build it with ``SearchSpace.load(preset_or_path_or_mapping)``."""

    def __init__(self, spec: Mapping[str, Any], source: str = "<search space>") -> None:
        self.source = source
        self.distributions: dict[str, Distribution] = {}
        self.schedule: dict | None = None
        self._parse(spec)
        self._check_combinations()

    @classmethod
    def load(cls, space: str | os.PathLike | Mapping[str, Any] | SearchSpace) -> SearchSpace:
        """Read a preset name, a YAML path, or a mapping, and validate it (raises SearchSpaceError)."""
        if isinstance(space, SearchSpace):
            return space
        if isinstance(space, Mapping):
            return cls(space)
        from search_spaces import PRESETS, preset_path

        path = preset_path(str(space)) if str(space) in PRESETS else Path(space)
        if not path.is_file():
            raise SearchSpaceError(f"Search space {str(space)!r} is neither a preset ({', '.join(PRESETS)}) "
                                   "nor an existing YAML file")
        try:
            spec = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise SearchSpaceError(f"{path}: not valid YAML ({error})") from None
        if not isinstance(spec, Mapping):
            raise SearchSpaceError(f"{path}: expected a mapping of hyperparameter to distribution, got {spec!r}")
        return cls(spec, str(path))

    def suggest(self, trial) -> dict[str, Any]:
        """Sample a Stacey config dict from ``trial`` (an optuna.Trial or FixedTrial)."""
        config: dict[str, Any] = {}
        for name, distribution in self.distributions.items():
            value = distribution.sample(trial, name)
            if name.startswith("kinds."):
                _, kind, key = name.split(".")
                config.setdefault("kinds", {}).setdefault(kind, {})[key] = value
            elif name in _BETA_KEYS:
                config.setdefault("betas", [None, None])[_BETA_KEYS.index(name)] = value
            else:
                config[name] = value
        if self.schedule is not None:
            config["schedule"] = dict(self.schedule)
        return config

    def p_names(self) -> list[str]:
        """Names of the sampled p values ("p", "kinds.matrix.p", ...)."""
        return [name for name in self.distributions if name == "p" or name.endswith(".p")]

    def _error(self, key: str, message: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: {key}: {message}")

    def _parse(self, spec: Mapping[str, Any]) -> None:
        for key in spec:
            if key not in _TOP_KEYS:
                raise self._error(key, f"unknown key (allowed keys: {', '.join(_TOP_KEYS)})")
        for key, value in spec.items():
            if key == "betas":
                self._parse_betas(value)
            elif key == "kinds":
                self._parse_kinds(value)
            elif key == "schedule":
                if not isinstance(value, Mapping):
                    raise self._error(key, f"expected a fixed schedule mapping such as {{name: constant}}, got {value!r}")
                self.schedule = dict(value)
            elif key == "eps":
                distribution = self._distribution(key, value, bound="eps")
                if distribution.kind != "fixed":
                    raise self._error(key, "eps is not tuned: give a plain value")
                self.distributions[key] = distribution
            else:
                self.distributions[key] = self._distribution(key, value, bound=key)

    def _parse_betas(self, value: Any) -> None:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self._error("betas", f"expected [beta1, beta2], got {value!r}")
            value = dict(zip(_BETA_KEYS, value))
        if not isinstance(value, Mapping):
            raise self._error("betas", f"expected a mapping with keys beta1, beta2 or a list, got {value!r}")
        for key in value:
            if key not in _BETA_KEYS:
                raise self._error(f"betas.{key}", "unknown key (allowed keys: beta1, beta2)")
        for key in _BETA_KEYS:
            if key not in value:
                raise self._error("betas", f"missing {key}")
            self.distributions[key] = self._distribution(f"betas.{key}", value[key], bound="beta")

    def _parse_kinds(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise self._error("kinds", f"expected a mapping of kind to overrides, got {value!r}")
        for kind, overrides in value.items():
            if kind not in _KINDS:
                raise self._error(f"kinds.{kind}", f"unknown kind (choose from {', '.join(_KINDS)})")
            if not isinstance(overrides, Mapping):
                raise self._error(f"kinds.{kind}", f"expected a mapping with keys from {', '.join(_KIND_KEYS)}")
            for key, spec in overrides.items():
                if key not in _KIND_KEYS:
                    raise self._error(f"kinds.{kind}.{key}", f"unknown key (allowed keys: {', '.join(_KIND_KEYS)})")
                self.distributions[f"kinds.{kind}.{key}"] = self._distribution(f"kinds.{kind}.{key}", spec, bound=key)

    def _distribution(self, key: str, spec: Any, bound: str) -> Distribution:
        if not isinstance(spec, Mapping):
            spec = {"distribution": "fixed", "value": spec}
        kind = spec.get("distribution")
        if kind not in DISTRIBUTIONS:
            raise self._error(key, f"bad distribution {kind!r} (choose from {', '.join(DISTRIBUTIONS)})")
        allowed = {"fixed": {"value"}, "categorical": {"choices"}}.get(kind, {"low", "high"})
        for field in spec:
            if field != "distribution" and field not in allowed:
                raise self._error(key, f"unknown field {field!r} for a {kind} distribution "
                                       f"(allowed: {', '.join(sorted(allowed))})")
        for field in allowed:
            if field not in spec:
                raise self._error(key, f"a {kind} distribution needs {field!r}")
        if kind == "fixed":
            distribution = Distribution(kind, value=self._value(key, spec["value"], bound))
        elif kind == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise self._error(key, f"choices must be a non-empty list, got {choices!r}")
            distribution = Distribution(kind, choices=tuple(self._value(key, c, bound) for c in choices))
        else:
            low, high = (self._number(f"{key}.{end}", spec[end]) for end in ("low", "high"))
            if not low < high:
                raise self._error(key, f"empty or inverted range [{low}, {high}] (need low < high; "
                                       "use {distribution: fixed, value: V} for a single value)")
            if kind == "p_exponent" and bound != "p":
                raise self._error(key, "p_exponent is only for p")
            if kind == "log_uniform" and low <= 0:
                raise self._error(key, f"a log_uniform range must be above 0, got low = {low} "
                                       "(use uniform, or a small positive low such as 1e-6)")
            if kind != "p_exponent" and high == math.inf:
                raise self._error(key, "high must be finite (only p_exponent reaches p = inf)")
            distribution = Distribution(kind, low=low, high=high)
            for end in (low, high):
                self._value(key, end, bound)
        return distribution

    def _number(self, key: str, value: Any) -> float:
        if isinstance(value, bool):
            raise self._error(key, f"expected a number, got {value!r}")
        if isinstance(value, str) and value.strip().lower() in (".inf", "+.inf"):
            value = "inf"  # YAML's spelling, when it arrives quoted
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self._error(key, f"expected a number, got {value!r}") from None
        if math.isnan(number):
            raise self._error(key, "expected a number, got nan")
        return number

    def _value(self, key: str, value: Any, bound: str) -> Any:
        """Check one possible value of the hyperparameter ``bound`` names; return it as Stacey takes it."""
        if bound == "variant":
            if value not in ("p2", "pp"):
                raise self._error(key, f"variant must be p2 or pp, got {value!r}")
            return value
        number = self._number(key, value)
        if bound == "p":
            if not number > 1:
                raise self._error(key, f"p must be > 1 (p = inf is allowed), got {number}")
            return number
        lowest, highest, open_top = _BOUNDS[bound]
        if number < lowest or number > highest or (open_top and number == highest):
            top = f"{highest})" if open_top else f"{highest}]"
            raise self._error(key, f"{number} is outside the allowed range [{lowest}, {top}")
        return number

    def _check_combinations(self) -> None:
        """The pp variant has no mirror map at p = inf: refuse a space that could sample both."""
        variant = self.distributions.get("variant")
        if variant is None or "pp" not in variant.extremes():
            return
        for name in self.p_names():
            if math.inf in self.distributions[name].extremes():
                raise self._error(name, "can reach p = inf, which the pp variant cannot use: "
                                        "give p a finite high or drop pp from variant")

