"""One hyperparameter's distribution, as a search-space file writes it, and the parsing every space shares.

In a YAML space, each hyperparameter's value is a distribution, or a plain value meaning "fixed"::

    {distribution: uniform,     low: A, high: B}       float, uniform in [A, B]
    {distribution: log_uniform, low: A, high: B}       float, uniform in log space (A > 0)
    {distribution: categorical, choices: [a, b, ...]}
    {distribution: fixed,       value: V}              not tuned (a plain V means the same)
    {distribution: p_exponent,  low: A, high: B}       Stacey's p, through r = 1/(p-1) (see search_space)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Distribution", "DISTRIBUTIONS", "SearchSpaceError", "SpaceParser", "r_name"]

DISTRIBUTIONS = ("uniform", "log_uniform", "categorical", "fixed", "p_exponent")


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
        r = trial.suggest_float(r_name(name), *self.r_range())
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


def r_name(name: str) -> str:
    return name[:-1] + "r" if name.endswith("p") else "r"


class SpaceParser:
    """Reads distributions from a space's spec, with errors that name the space's file and the key.

    ``check(key, value)`` is the space's own check of one possible value of ``key``; it returns the
    value as the optimizer takes it, or raises a ValueError saying what is allowed.
    """

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.source}: {key}: {message}")

    def distribution(
        self, key: str, spec: Any, check: Callable[[str, Any], Any], p_exponent: bool = False
    ) -> Distribution:
        """Parse ``spec`` (a distribution mapping or a plain value); ``p_exponent`` allows that kind."""
        if not isinstance(spec, Mapping):
            spec = {"distribution": "fixed", "value": spec}
        kind = spec.get("distribution")
        if kind not in DISTRIBUTIONS:
            raise self.error(key, f"bad distribution {kind!r} (choose from {', '.join(DISTRIBUTIONS)})")
        allowed = {"fixed": {"value"}, "categorical": {"choices"}}.get(kind, {"low", "high"})
        for field in spec:
            if field != "distribution" and field not in allowed:
                raise self.error(
                    key, f"unknown field {field!r} for a {kind} distribution (allowed: {', '.join(sorted(allowed))})"
                )
        for field in allowed:
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
        if kind == "p_exponent" and not p_exponent:
            raise self.error(key, "p_exponent is only for p")
        if kind == "log_uniform" and low <= 0:
            raise self.error(
                key,
                f"a log_uniform range must be above 0, got low = {low} "
                "(use uniform, or a small positive low such as 1e-6)",
            )
        if kind != "p_exponent" and high == math.inf:
            raise self.error(key, "high must be finite (only p_exponent reaches p = inf)")
        for end in (low, high):
            self._checked(key, end, check)
        return Distribution(kind, low=low, high=high)

    def _checked(self, key: str, value: Any, check: Callable[[str, Any], Any]) -> Any:
        try:
            return check(key, value)
        except SearchSpaceError:
            raise
        except ValueError as error:
            raise self.error(key, str(error)) from None

    def number(self, key: str, value: Any) -> float:
        """``value`` as a float (YAML's ".inf" included); a SearchSpaceError naming ``key`` otherwise."""
        if isinstance(value, bool):
            raise self.error(key, f"expected a number, got {value!r}")
        if isinstance(value, str) and value.strip().lower() in (".inf", "+.inf"):
            value = "inf"  # YAML's spelling, when it arrives quoted
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(key, f"expected a number, got {value!r}") from None
        if math.isnan(number):
            raise self.error(key, "expected a number, got nan")
        return number
