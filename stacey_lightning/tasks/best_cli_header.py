"""What the header of ``best_cli.yaml`` says about the optimizer of a module without StaceyMixin, and how its
Stacey is written: LightningCLI's optimizer is one param group, so the header lists what that group leaves out of
the best trial, or, where it cannot hold the trial's geometry at all (kinds in another norm) or its evaluation
(at an average of the weights, which needs StaceyMixin's switch), why the file leaves the optimizer to
``StaceyReplay``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["plain", "kinds_in_other_norms", "replayed_whole", "what_differs"]


def plain(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Stacey's keyword arguments as YAML writes them (betas as a list)."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in arguments.items()}


def kinds_in_other_norms(config: Any) -> dict[str, str]:
    """``{kind: norm}`` of the kinds whose norm is not the config's global one (a Muon-like winner's spectral
    matrices): a geometry that LightningCLI's one-group optimizer cannot hold."""
    return {kind: o["norm"] for kind, o in config.kinds.items() if o.get("norm", config.norm) != config.norm}


def replayed_whole(apart: dict[str, str], norm: str, average_horizon: float | None, module_name: str) -> list[str]:
    """Header lines: why a module without StaceyMixin gets no LightningCLI optimizer in best_cli.yaml."""
    by_norm: dict[str, list[str]] = {}
    for kind, kind_norm in apart.items():
        by_norm.setdefault(kind_norm, []).append(kind)
    kinds = ", ".join(f"{' and '.join(names)} kinds in the {kind_norm} norm" for kind_norm, names in by_norm.items())
    reasons = [f"steps its {kinds}, the rest in the {norm} norm"] if apart else []
    if average_horizon is not None:
        reasons.append(f"is evaluated at an average of its weights (average_horizon {average_horizon:g})")
    return [
        f"{module_name} has no StaceyMixin, and the best trial {' and '.join(reasons)}:",
        "LightningCLI's optimizer (one param group, never switched to the average) cannot do that, so `optimizer:",
        "null` below and StaceyReplay gives the module StaceyMixin itself (stacey_lightning.lightning.adopt): the",
        "fit trains as the trial did.",
    ]


def what_differs(config: Any, steps: float, module_name: str) -> list[str]:
    """Header lines: what LightningCLI's one-group optimizer leaves out of the trials' Stacey."""
    lines = []
    if config.kinds:
        lines.append(f"- per-kind settings {config.kinds} are left out: one param group")
    if config.weight_decay:
        lines.append("- weight decay applies to vectors too (biases, norms); the trials gave them none")
    if config.schedule.get("name") != "constant":
        lines.append(f"- the schedule {config.schedule} is left out: a constant lr")
    if config.tau_horizon is not None and math.isfinite(steps):
        lines.append(f"- tau = 1 / (tau_horizon * T) for T = {steps:.0f} optimizer steps, the trials' on one device")
    keep = [
        "To train as the trials did instead, set `optimizer: null` below: StaceyReplay then gives the module",
        "StaceyMixin itself (stacey_lightning.lightning.adopt), kinds, weight decay rules and schedule included.",
    ]
    if not lines:
        return [f"{module_name} has no StaceyMixin: Stacey comes as LightningCLI's optimizer, one param group.", *keep]
    return [
        f"{module_name} has no StaceyMixin: Stacey comes as LightningCLI's optimizer, one param group, so",
        *lines,
        *keep,
    ]
