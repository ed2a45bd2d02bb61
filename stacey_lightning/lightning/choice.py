"""``OptimizerChoice``: what a module trains with, Stacey with its config or another torch optimizer
with its options. It is the one door through which every run (a tuning trial, a compared run, a
user's own fit) gives a module its optimizer: ``StaceyMixin.set_optimizer_choice(choice)``, after
which the mixin's ``configure_optimizers`` builds it with the parameter groups by kind, so Stacey
and the baselines see the same groups and the same no-decay rule.

Baselines are resolved (name or class path to class, defaults merged) above this layer, in
``stacey_lightning.baselines``; here a choice only carries the class and its keyword arguments. This
module imports neither torch nor the config at run time: the command line reads ``STACEY`` from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stacey_lightning.lightning.config import StaceyConfig

__all__ = ["OptimizerChoice", "STACEY"]

STACEY = "stacey"


@dataclass(frozen=True)
class OptimizerChoice:
    """Stacey (``name="stacey"``, ``config``: the config to use, None keeping the module's own) or
    a baseline (``name``, its ``optimizer_class`` and the keyword arguments ``options`` it is built
    with; ``lr`` and ``weight_decay`` among them apply per group)."""

    name: str = STACEY
    config: StaceyConfig | None = None
    optimizer_class: type | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.is_stacey and self.optimizer_class is not None:
            raise ValueError(f"optimizer {STACEY!r} is built from its config, not from a class")
        if not self.is_stacey and self.optimizer_class is None:
            raise ValueError(f"optimizer {self.name!r}: a baseline needs its optimizer_class")

    @property
    def is_stacey(self) -> bool:
        return self.name == STACEY

    @classmethod
    def stacey(cls, config: StaceyConfig | None = None) -> OptimizerChoice:
        return cls(STACEY, config=config)
