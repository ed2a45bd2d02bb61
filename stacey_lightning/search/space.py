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
    norm: {distribution: categorical, choices: [lp, adam]}  # every kind's, unless kinds give one
    kinds: {matrix: {norm: {distribution: categorical, choices: [lp, spectral]}}}  # or a fixed norm
    kinds: {matrix: {step_scale: {distribution: log_uniform, low: 0.1, high: 1.0}}}  # its step, times lr's
    schedule: {name: warmup_cosine, warmup_fraction: 0.05}  # passed through to the config, not tuned
    anchor_step: 3.0e-3                                      # the step a study's anchors start from
    eps: 1.0e-8                                              # fixed only
    model: {hidden: {distribution: int_log_uniform, low: 32, high: 256}}  # the module's own arguments

``suggest(trial)`` returns the sampled keys as a Stacey config mapping, ``sample_config(trial)`` the
whole validated config (``StaceyConfig.to_dict()``). Trial parameter names are the keys (``lr``,
``alpha``, ``tau``, ``beta1``, ``beta2``, ``weight_decay``, ``variant``, ``kinds.<kind>.<key>``), except
that p is sampled as ``r`` (``kinds.<kind>.r``), so the geometry from p = 2 (r = 1) to p = inf (r = 0)
is covered evenly. Which values are allowed is ``StaceyConfig``'s to say (``check_value``). Where lr is a
coordinate step, a kind in the spectral norm gets the lr_scale that makes its step's RMS that step, and so
does every kind in Adam's norm (``norm: adam``, AdamW's update RMS: the lr is then the step divided by it).
A kind's ``step_scale`` (the space's key, not Stacey's) makes its step that many times the trial's: the
lr_scale it would have, times ``step_scale``; so the matrices can step apart from the rest of the model,
as Muon's matrices do from the AdamW it gives the rest.

The ``model`` section samples the module's own ``__init__`` arguments, for a task given as a
LightningCLI config (``tasks.lightning_config``): ``suggest`` draws them on the trial as parameters
``model.<argument>``, which the task reads when it builds the module; they are not part of the Stacey
config, so the study records them with the task's own parameters (``best.yaml``'s ``task`` section).

``anchor_step`` is not sampled either: it is the coordinate step at which a study's anchors train first
(``search.anchors``; the SGD-like anchor at the same fraction of it as of the default, ``LION_STEP``), for a
family of models whose step is known to sit elsewhere. It must lie within lr's range.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stacey_lightning._yaml import read_mapping
from stacey_lightning.lightning.config import HYPERPARAMETERS, KIND_KEYS, KINDS, StaceyConfig
from stacey_lightning.optim._spectral import SPECTRAL_RMS
from stacey_lightning.search.distributions import (
    SPECIAL,
    Distribution,
    SearchSpaceError,
    SpaceParser,
    canonical,
    distribution_texts,
    param_name,
)

__all__ = [
    "SearchSpace",
    "SearchSpaceError",
    "Distribution",
    "KEYS",
    "load_yaml",
    "coordinate_scale",
    "stepping_alike",
    "unit_step",
    "STEP_SCALE",
    "DEFAULT_GRADIENT_SCALE",
]

KEYS = (*HYPERPARAMETERS, "kinds", "schedule", "model", "anchor_step")
# A kind's key of the space's own: its step, times the trial's (suggest turns it into lr_scale).
STEP_SCALE = "step_scale"
_BETA_KEYS = ("beta1", "beta2")
# c99 where a study has measured none yet: between the small transformer's 2e-4 and the MLP's 2e-3.
DEFAULT_GRADIENT_SCALE = 6e-4


def coordinate_scale(gradient_scale: float, p: float) -> float:
    """|s(c)| of a coordinate of size ``gradient_scale``: gradient_scale ** (1/(p-1)), 1 at p = inf. A step
    lr * coordinate_scale is what a large coordinate moves, the same for every p at a given lr of Lion's."""
    return 1.0 if p == math.inf else gradient_scale ** (1.0 / (p - 1.0))


def unit_step(gradient_scale: float, p: float, norm: str = "lp") -> float:
    """The step a unit lr makes: a large coordinate's, ``coordinate_scale``, in the l_p norm; the update's RMS,
    SPECTRAL_RMS, in the spectral norm (which is scaled to it) and in Adam's (AdamW's RMS per unit lr)."""
    return coordinate_scale(gradient_scale, p) if norm == "lp" else SPECTRAL_RMS


def stepping_alike(
    gradient_scale: float, p: float, own_p: float | None = None, norm: str | None = None, global_norm: str = "lp"
) -> float:
    """The lr_scale at which a kind of its own p or norm makes the step that the config's p and norm make."""
    own = unit_step(gradient_scale, p if own_p is None else own_p, norm or global_norm)
    return unit_step(gradient_scale, p, global_norm) / own


def load_yaml(space: str | os.PathLike) -> tuple[Mapping[str, Any], str]:
    """(spec, path) of a preset name or a YAML file; a SearchSpaceError saying which, if neither."""
    from search_spaces import BASELINES, PRESETS, preset_path

    path = preset_path(str(space)) if str(space) in (*PRESETS, BASELINES) else Path(space)
    if not path.is_file():
        raise SearchSpaceError(
            f"Search space {str(space)!r} is neither a preset ({', '.join(PRESETS)}) nor an existing YAML file"
        )
    return read_mapping(path, "a search space (hyperparameter: distribution)", SearchSpaceError), str(path)


class SearchSpace(SpaceParser):
    """A validated search space. Build it with ``SearchSpace.load(preset_or_path_or_mapping)``."""

    def __init__(self, spec: Mapping[str, Any], source: str = "<search space>") -> None:
        super().__init__(source)
        self.distributions: dict[str, Distribution] = {}
        self.schedule: dict | None = None
        self.model: dict[str, Distribution] = {}  # "model.<argument>" -> its distribution
        self.anchor_step: float | None = None  # None: the anchors' own middle steps
        self._parse(spec)
        self._check_combinations()

    @classmethod
    def load(cls, space: str | os.PathLike | Mapping[str, Any] | SearchSpace) -> SearchSpace:
        """Read a preset name, a YAML path, or a mapping, and validate it (raises SearchSpaceError)."""
        if isinstance(space, SearchSpace):
            return space
        if isinstance(space, Mapping):
            return cls(space)
        return cls(*load_yaml(space))

    def suggest(self, trial, gradient_scale: float | None = None) -> dict[str, Any]:
        """Sample the space's keys from ``trial`` (an optuna.Trial or FixedTrial) as a Stacey config mapping.

        Args:
            gradient_scale: the size of a large coordinate of c (its 99th percentile, measured by the
                study: ``search.calibration``) that turns a coordinate step into lr; without one,
                ``DEFAULT_GRADIENT_SCALE``.
        """
        values = {name: distribution.sample(trial, name) for name, distribution in self.distributions.items()}
        defaults = StaceyConfig()
        p, norm = values.get("p", defaults.p), values.get("norm", defaults.norm)
        if "lr" in values and self.distributions["lr"].kind == "coordinate_step":
            scale = gradient_scale or DEFAULT_GRADIENT_SCALE
            values["lr"] = values["lr"] / unit_step(scale, p, norm)
            for kind in KINDS:  # every kind's coordinates step alike, whatever its own p or norm
                own_p, own_norm = values.get(f"kinds.{kind}.p"), values.get(f"kinds.{kind}.norm")
                if f"kinds.{kind}.lr_scale" not in values and (own_p is not None or (own_norm or norm) != norm):
                    values[f"kinds.{kind}.lr_scale"] = stepping_alike(scale, p, own_p, own_norm, norm)
        for kind in KINDS:
            step_scale = values.pop(f"kinds.{kind}.{STEP_SCALE}", None)
            if step_scale is not None:
                values[f"kinds.{kind}.lr_scale"] = values.get(f"kinds.{kind}.lr_scale", 1.0) * step_scale
        lr = values.get("lr", defaults.lr)
        for name, distribution in self.distributions.items():
            if distribution.times == "lr":  # alpha as a multiple of this trial's lr
                values[name] *= lr
            elif distribution.times == "1/lr":  # weight decay as a decay per step
                values[name] /= lr
        config: dict[str, Any] = {}
        for name, value in values.items():
            if name.startswith("kinds."):
                _, kind, key = name.split(".")
                config.setdefault("kinds", {}).setdefault(kind, {})[key] = value
            elif name in _BETA_KEYS:
                config.setdefault("betas", [None, None])[_BETA_KEYS.index(name)] = value
            else:
                config[name] = value
        if self.schedule is not None:
            config["schedule"] = dict(self.schedule)
        for name, distribution in self.model.items():
            distribution.sample(trial, name)  # read by the task from the trial when it builds the module
        return config

    def sample_config(self, trial, gradient_scale: float | None = None) -> dict[str, Any]:
        """The whole Stacey config for ``trial``, validated: ``StaceyConfig.to_dict()``."""
        return StaceyConfig.from_source(self.suggest(trial, gradient_scale)).to_dict()

    def fingerprint(self) -> dict[str, str]:
        """SpaceParser's, with the module's arguments (``model.<argument>``), the schedule and ``anchor_step``."""
        entries = {**super().fingerprint(), **distribution_texts(self.model)}
        if self.schedule is not None:
            entries["schedule"] = canonical(self.schedule)
        if self.anchor_step is not None:
            entries["anchor_step"] = canonical(self.anchor_step)
        return entries

    def model_arguments(self) -> list[str]:
        """The module arguments the ``model`` section samples."""
        return [name.removeprefix("model.") for name in self.model]

    def param_names(self) -> set[str]:
        """The names of the trial parameters this space samples (p appears as r)."""
        return {
            param_name(name, distribution.kind, distribution.times)
            for name, distribution in self.distributions.items()
            if distribution.kind != "fixed"
        }

    def params_for(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Trial parameters for config ``values`` (p, lr, tau_horizon, alpha_per_lr, beta1, ...), clipped into
        the space; a sampled key they leave out takes the middle of its range. For anchor trials."""
        params = {}
        for key, distribution in self.distributions.items():
            if distribution.kind == "fixed":
                continue
            name = param_name(key, distribution.kind, distribution.times)
            # Relative values come as the trial parameter (alpha_per_lr, step), the others as the key (p, lr).
            value = values.get(name if distribution.times or distribution.kind == "coordinate_step" else key)
            if value is None and key.startswith("kinds.") and key.endswith(".p"):
                value = values.get("p")  # an anchor's geometry holds for every kind
            params[name] = distribution.centre_param() if value is None else distribution.param_value(value)
        return params

    def p_names(self) -> list[str]:
        """Names of the p values the space sets ("p", "kinds.matrix.p", ...)."""
        return [name for name in self.distributions if name == "p" or name.endswith(".p")]

    def _parse(self, spec: Mapping[str, Any]) -> None:
        for key in spec:
            if key not in KEYS:
                raise self.error(key, f"unknown key (allowed keys: {', '.join(KEYS)})")
        for key, value in spec.items():
            if key == "betas":
                self._parse_betas(value)
            elif key == "model":
                self._parse_model(value)
            elif key == "kinds":
                self._parse_kinds(value)
            elif key == "schedule":
                self._parse_schedule(value)
            elif key == "anchor_step":
                continue  # read once lr's range is known
            else:
                special = next((kind for kind, owner in SPECIAL.items() if owner == key), None)
                times = {"alpha": ("lr",), "weight_decay": ("1/lr",)}.get(key, ())
                distribution = self.distribution(key, value, self._check, special=special, times=times)
                if key == "eps" and distribution.kind != "fixed":
                    raise self.error(key, "eps is not tuned: give a plain value")
                self.distributions[key] = distribution
        if "anchor_step" in spec:
            self._parse_anchor_step(spec["anchor_step"])

    def _parse_anchor_step(self, value: Any) -> None:
        lr = self.distributions.get("lr")
        if lr is None or lr.kind != "coordinate_step":
            raise self.error("anchor_step", "needs lr sampled as a coordinate step ({distribution: coordinate_step})")
        step = self.number("anchor_step", value)  # YAML reads 3e-3 (no dot) as a string, as every number here
        if not lr.low <= step <= lr.high:
            raise self.error("anchor_step", f"expected a step within lr's range [{lr.low:g}, {lr.high:g}]: {value!r}")
        self.anchor_step = step

    def _parse_schedule(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise self.error("schedule", f"expected a fixed schedule mapping such as {{name: constant}}, got {value!r}")
        try:
            StaceyConfig.from_source({"schedule": dict(value)})
        except ValueError as error:
            raise self.error("schedule", str(error)) from None
        self.schedule = dict(value)

    def _parse_model(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise self.error("model", f"expected a mapping of the module's arguments to distributions, got {value!r}")
        for argument, spec in value.items():
            name = f"model.{argument}"
            self.model[name] = self.distribution(name, spec, lambda key, item: item)

    def _parse_betas(self, value: Any) -> None:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self.error("betas", f"expected [beta1, beta2], got {value!r}")
            value = dict(zip(_BETA_KEYS, value))
        if not isinstance(value, Mapping):
            raise self.error("betas", f"expected a mapping with keys beta1, beta2 or a list, got {value!r}")
        for key in value:
            if key not in _BETA_KEYS:
                raise self.error(f"betas.{key}", "unknown key (allowed keys: beta1, beta2)")
        for key in _BETA_KEYS:
            if key not in value:
                raise self.error("betas", f"missing {key}")
            self.distributions[key] = self.distribution(f"betas.{key}", value[key], self._check)

    def _parse_kinds(self, value: Any) -> None:
        if not isinstance(value, Mapping):
            raise self.error("kinds", f"expected a mapping of kind to overrides, got {value!r}")
        for kind, overrides in value.items():
            if kind not in KINDS:
                raise self.error(f"kinds.{kind}", f"unknown kind (choose from {', '.join(KINDS)})")
            allowed = ", ".join((*KIND_KEYS, STEP_SCALE))
            if not isinstance(overrides, Mapping):
                raise self.error(f"kinds.{kind}", f"expected a mapping with keys from {allowed}")
            if STEP_SCALE in overrides and "lr_scale" in overrides:
                raise self.error(f"kinds.{kind}.{STEP_SCALE}", "give lr_scale or step_scale, not both")
            for key, spec in overrides.items():
                name = f"kinds.{kind}.{key}"
                if key not in (*KIND_KEYS, STEP_SCALE):
                    raise self.error(name, f"unknown key (allowed keys: {allowed})")
                special = "p_exponent" if key == "p" else None
                check = self._check_step_scale if key == STEP_SCALE else self._check
                self.distributions[name] = self.distribution(name, spec, check, special=special)

    def _check_step_scale(self, key: str, value: Any) -> float:
        value = self.number(key, value)
        if not value > 0:
            raise self.error(key, f"a step scale must be > 0, got {value}")
        return value

    def _check(self, key: str, value: Any) -> Any:
        """One possible value of the config key ``key`` ("lr", "betas.beta1", "kinds.matrix.p"), checked by
        StaceyConfig; returned as Stacey takes it."""
        config_key = key.removeprefix("betas.")
        if config_key not in ("variant", "tau_follows_lr", "norm") and not config_key.endswith(".norm"):
            value = self.number(key, value)
            if (config_key == "p" or config_key.endswith(".p")) and not value > 1:
                # r = 1/(p-1) needs p > 1 as much as Stacey does.
                raise self.error(key, f"p must be > 1 (p = inf is allowed), got {value}")
        try:
            StaceyConfig.check_value(config_key, value)
        except ValueError as error:
            raise self.error(key, f"{value} is outside what Stacey accepts: {error}") from None
        return value

    def _check_combinations(self) -> None:
        """The pp variant has no mirror map at p = inf, nor in the spectral or Adam norm: refuse a space that
        could sample both."""
        variant = self.distributions.get("variant")
        if variant is None or "pp" not in variant.extremes():
            return
        for name in ("norm", *(f"kinds.{kind}.norm" for kind in KINDS)):
            if name in self.distributions and set(self.distributions[name].extremes()) - {"lp"}:
                raise self.error(
                    name, "can be a norm other than lp, which the pp variant cannot use: drop pp from variant"
                )
        for name in self.p_names():
            if math.inf in self.distributions[name].extremes():
                raise self.error(
                    name,
                    "can reach p = inf, which the pp variant cannot use: give p a finite high or drop pp from variant",
                )
