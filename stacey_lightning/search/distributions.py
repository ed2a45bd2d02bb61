"""One hyperparameter's distribution, as a search-space file writes it, and the parsing every space shares.

In a YAML space, each hyperparameter's value is a distribution, or a plain value meaning "fixed"::

    {distribution: uniform,     low: A, high: B}       float, uniform in [A, B]
    {distribution: log_uniform, low: A, high: B}       float, uniform in log space (A > 0)
    {distribution: categorical, choices: [a, b, ...]}
    {distribution: fixed,       value: V}              not tuned (a plain V means the same)
    {distribution: p_exponent,  low: A, high: B}       Stacey's p, through r = 1/(p-1) (see search_space)
    {distribution: horizon,     low: A, high: B}       tau_horizon, through its rate 1/tau_horizon, uniform
                                                       in [1/B, 1/A]; B may be .inf (the rate 0: tau = 0)
    {distribution: coordinate_step, low: A, high: B}   lr, through the step a large coordinate makes,
                                                       log-uniform in [A, B] (see search_space)
    {distribution: int_uniform, low: A, high: B}       integer, uniform in [A, B] (a module's width, say)
    {distribution: int_log_uniform, low: A, high: B}   integer, uniform in log space (A > 0)

A uniform or log_uniform value may be relative to lr: ``times: lr`` (alpha: the value times lr) or
``times: 1/lr`` (weight_decay: the value divided by lr, so that the value is the decay per step).

``p_exponent`` and ``horizon`` sample the reciprocal of the value, uniformly: the geometry from p = 2
to p = inf, and the pull from a short horizon to none, are covered evenly, ends included.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from stacey_lightning.lightning.config import read_number

__all__ = [
    "Distribution", "DISTRIBUTIONS", "SPECIAL", "SearchSpaceError", "SpaceParser", "param_name", "canonical",
    "distribution_texts", "FINGERPRINT_FORMAT",
]  # fmt: skip

DISTRIBUTIONS = (
    "uniform",
    "log_uniform",
    "categorical",
    "fixed",
    "p_exponent",
    "horizon",
    "coordinate_step",
    "int_uniform",
    "int_log_uniform",
)
_INTEGER = ("int_uniform", "int_log_uniform")
# The distributions only one key may use: that key's own parametrisation.
SPECIAL = {"p_exponent": "p", "horizon": "tau_horizon", "coordinate_step": "lr"}
_RECIPROCAL = ("p_exponent", "horizon")  # sampled through the reciprocal of the value (p - 1, or itself)


# How SpaceParser.fingerprint writes a space; a study recorded in another format is re-recorded, not refused.
FINGERPRINT_FORMAT = "1"


def canonical(value: Any) -> str:
    """``value`` (a mapping of a distribution's fields, a schedule, a number) as one JSON text: keys sorted,
    unset fields (None, empty) left out, infinity as JSON's Infinity, anything else JSON lacks as its str."""
    if isinstance(value, Mapping):
        value = {key: item for key, item in value.items() if item is not None and item != ()}
    return json.dumps(value, sort_keys=True, default=str)


def distribution_texts(distributions: Mapping[str, Distribution]) -> dict[str, str]:
    """Each distribution's kind and the fields it sets, as ``canonical`` text, by key: what a study records."""
    return {key: canonical(asdict(distribution)) for key, distribution in distributions.items()}


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
    times: str | None = None  # the key whose value this one multiplies (alpha: lr), if any

    def sample(self, trial, name: str) -> Any:
        """Draw from ``trial`` under the parameter ``name`` (nothing is drawn for a fixed value)."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "uniform":
            return trial.suggest_float(param_name(name, self.kind, self.times), self.low, self.high)
        if self.kind in ("log_uniform", "coordinate_step"):
            return trial.suggest_float(param_name(name, self.kind, self.times), self.low, self.high, log=True)
        if self.kind in _INTEGER:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.kind == "int_log_uniform")
        r = trial.suggest_float(param_name(name, self.kind), *self.r_range())
        return self.from_r(r)

    def _shift(self) -> float:
        return 1.0 if self.kind == "p_exponent" else 0.0

    def r_range(self) -> tuple[float, float]:
        """For p_exponent and horizon: the interval of the reciprocal r = 1/(value - shift), shift 1 for p
        and 0 for a horizon; r = 0 stands for the value inf."""
        shift = self._shift()
        return (0.0 if self.high == math.inf else 1.0 / (self.high - shift)), 1.0 / (self.low - shift)

    def from_r(self, r: float) -> float:
        return math.inf if r == 0.0 else self._shift() + 1.0 / r

    def to_r(self, value: float) -> float:
        """The reciprocal of ``value``, clipped into ``r_range``."""
        low, high = self.r_range()
        r = 0.0 if value == math.inf else 1.0 / (value - self._shift())
        return min(max(r, low), high)

    def centre_param(self) -> Any:
        """The middle of the range as the trial parameter holds it (geometric for log_uniform)."""
        if self.kind == "categorical":
            return self.choices[0]
        if self.kind in _RECIPROCAL:
            return sum(self.r_range()) / 2
        if self.kind in ("log_uniform", "coordinate_step"):
            return math.sqrt(self.low * self.high)
        if self.kind in _INTEGER:
            centre = math.sqrt(self.low * self.high) if self.kind == "int_log_uniform" else (self.low + self.high) / 2
            return round(centre)
        return (self.low + self.high) / 2

    def param_value(self, value: Any) -> Any:
        """``value`` (of the key, or of its multiple for ``times``) as the trial parameter, clipped into range."""
        if self.kind == "categorical":
            return value if value in self.choices else self.choices[0]
        if self.kind in _RECIPROCAL:
            return self.to_r(value)
        return min(max(value, self.low), self.high)

    def extremes(self) -> list:
        """The values at the ends of the range (every choice for categorical), for validation."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "categorical":
            return list(self.choices)
        return [self.low, self.high]


def param_name(key: str, kind: str, times: str | None = None) -> str:
    """The Optuna parameter a key is sampled as: r for p (kinds.<kind>.r), tau_rate for tau_horizon, step
    for lr as a coordinate step, alpha_per_lr for ``times: lr``, weight_decay_times_lr for ``times: 1/lr``,
    the key otherwise."""
    if kind == "p_exponent":
        return key[:-1] + "r" if key.endswith("p") else "r"
    if kind == "horizon":
        return key.removesuffix("horizon") + "rate"
    if kind == "coordinate_step":
        return "step"
    if times == "1/lr":
        return f"{key}_times_lr"
    return f"{key}_per_{times}" if times else key


class SpaceParser:
    """Reads distributions from a space's spec, with errors that name the space's file and the key.

    ``check(key, value)`` is the space's own check of one possible value of ``key``; it returns the
    value as the optimizer takes it, or raises a ValueError saying what is allowed.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: {key}: {message}")

    def fingerprint(self) -> dict[str, str]:
        """What the space samples, key by key, as text: a study records it, and resuming it under another
        space is refused (``study.open_study``), since its anchors, ladder and sampler read its trials as
        draws from one space. The texts hold each distribution's kind and the fields it sets, not the code's
        layout of them (``FINGERPRINT_FORMAT`` is the texts' own: a study recorded in another is re-recorded)."""
        return distribution_texts(self.distributions)

    def distribution(
        self,
        key: str,
        spec: Any,
        check: Callable[[str, Any], Any],
        special: str | None = None,
        times: tuple[str, ...] = (),
    ) -> Distribution:
        """Parse ``spec`` (a distribution mapping or a plain value) for ``key``.

        Args:
            check: the space's check of one possible value (returns it as the optimizer takes it).
            special: the key's own distribution kind, if it has one (``SPECIAL``: "p_exponent" for p,
                "horizon" for tau_horizon, "coordinate_step" for lr).
            times: the keys this one may be sampled as a multiple of (``times: lr`` for alpha).
        """
        if not isinstance(spec, Mapping):
            spec = {"distribution": "fixed", "value": spec}
        kind = spec.get("distribution")
        if kind not in DISTRIBUTIONS:
            raise self.error(key, f"bad distribution {kind!r} (choose from {', '.join(DISTRIBUTIONS)})")
        allowed = {"fixed": {"value"}, "categorical": {"choices"}}.get(kind, {"low", "high"})
        if kind in ("uniform", "log_uniform") and times:
            allowed = allowed | {"times"}
        for field in spec:
            if field != "distribution" and field not in allowed:
                raise self.error(
                    key, f"unknown field {field!r} for a {kind} distribution (allowed: {', '.join(sorted(allowed))})"
                )
        for field in allowed - {"times"}:
            if field not in spec:
                raise self.error(key, f"a {kind} distribution needs {field!r}")
        if kind == "fixed":
            return Distribution(kind, value=self._checked(key, spec["value"], check))
        if kind == "categorical":
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise self.error(key, f"choices must be a non-empty list, got {choices!r}")
            return Distribution(kind, choices=tuple(self._checked(key, c, check) for c in choices))
        low, high = (self.number(f"{key}.{end}", spec[end]) for end in ("low", "high"))
        if not low < high:
            raise self.error(
                key,
                f"empty or inverted range [{low}, {high}] (need low < high; "
                "use {distribution: fixed, value: V} for a single value)",
            )
        if kind in SPECIAL and kind != special:
            raise self.error(key, f"{kind} is only for {SPECIAL[kind]}")
        if kind in _INTEGER and not (low.is_integer() and high.is_integer()):
            raise self.error(key, f"an {kind} range needs integer ends, got [{low}, {high}]")
        if kind in ("log_uniform", "horizon", "coordinate_step", "int_log_uniform") and low <= 0:
            raise self.error(
                key,
                f"a {kind} range must be above 0, got low = {low} (use uniform, or a small positive low such as 1e-6)",
            )
        if kind not in _RECIPROCAL and high == math.inf:
            raise self.error(key, "high must be finite (only p_exponent and horizon reach .inf)")
        multiple_of = spec.get("times")
        if multiple_of is not None and multiple_of not in times:
            raise self.error(key, f"times: {multiple_of!r} is not allowed here (allowed: {', '.join(times)})")
        if multiple_of is None and kind != "coordinate_step":  # relative values are checked per trial
            for end in (low, high):
                self._checked(key, end, check)
        return Distribution(kind, low=low, high=high, times=multiple_of)

    def _checked(self, key: str, value: Any, check: Callable[[str, Any], Any]) -> Any:
        try:
            return check(key, value)
        except SearchSpaceError:
            raise
        except ValueError as error:
            raise self.error(key, str(error)) from None

    def number(self, key: str, value: Any) -> float:
        """``value`` as a float (read as configs read it, "inf" and ".inf" included); a SearchSpaceError
        naming ``key`` otherwise."""
        try:
            return read_number(value, key)
        except ValueError:
            raise self.error(key, f"expected a number, got {value!r}") from None
