"""``BaselineSpace``: the distributions a study samples a baseline optimizer's options from.

The default spaces are the ``baselines`` preset (``search_spaces/baselines.yaml``): per optimizer,
its constructor arguments mapped to distributions (the format of Stacey's spaces, without
p_exponent)::

    adamw:
      lr: {distribution: log_uniform, low: 1.0e-4, high: 3.0e-2}
      weight_decay: {distribution: log_uniform, low: 1.0e-5, high: 1.0e-1}

A file of your own may hold several optimizers' entries like that, or one optimizer's arguments
alone. Names are checked against the optimizer's signature, and values by building the optimizer
at both ends of every range, before any trial runs. Trial parameter names are the argument names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from stacey_lightning.baselines import baseline_options, optimizer_class
from stacey_lightning.search.distributions import SearchSpaceError, SpaceParser
from stacey_lightning.search.space import load_yaml

__all__ = ["BaselineSpace"]


class BaselineSpace(SpaceParser):
    """A validated space of one baseline's options. Build it with ``BaselineSpace.load(optimizer, space)``."""

    def __init__(self, optimizer: str, spec: Mapping[str, Any], source: str = "<baseline space>") -> None:
        super().__init__(source)
        self.optimizer = optimizer
        self.distributions = {key: self.distribution(key, value, self._value) for key, value in spec.items()}
        self._check_options()

    @classmethod
    def load(
        cls, optimizer: str, space: str | os.PathLike | Mapping[str, Any] | BaselineSpace | None = None
    ) -> BaselineSpace:
        """The space of ``optimizer``'s options: ``space`` (a YAML path or mapping, holding either
        that optimizer's entry among others or its arguments alone), by default its entry in the
        ``baselines`` preset. Raises SearchSpaceError naming the file and key."""
        if isinstance(space, BaselineSpace):
            return space
        if space is None or isinstance(space, (str, os.PathLike)):
            spec, source = load_yaml(space if space is not None else "baselines")
        else:
            spec, source = space, "<baseline space>"
        if optimizer in spec:
            spec = spec[optimizer]
            if not isinstance(spec, Mapping):
                raise SearchSpaceError(
                    f"{source}: {optimizer}: expected a mapping of option to distribution, got {spec!r}"
                )
        elif space is None or any(
            isinstance(value, Mapping) and "distribution" not in value for value in spec.values()
        ):
            raise SearchSpaceError(
                f"{source}: no search space for {optimizer!r} (it has "
                f"{', '.join(map(str, spec))}); give one in a YAML file of your own"
            )
        return cls(optimizer, spec, source)

    def suggest(self, trial) -> dict[str, Any]:
        """The optimizer's keyword arguments for ``trial``: sampled and fixed values."""
        return {name: distribution.sample(trial, name) for name, distribution in self.distributions.items()}

    def sample_config(self, trial, gradient_scale: float | None = None) -> dict[str, Any]:
        """The options for ``trial`` (a baseline's need no resolution: ``gradient_scale`` is Stacey's only)."""
        return self.suggest(trial)

    def params_for(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Trial parameters for the options ``values``, clipped into the space; others at the middle."""
        return {
            name: distribution.centre_param() if values.get(name) is None else distribution.param_value(values[name])
            for name, distribution in self.distributions.items()
            if distribution.kind != "fixed"
        }

    def param_names(self) -> set[str]:
        """The names of the trial parameters this space samples."""
        return {name for name, distribution in self.distributions.items() if distribution.kind != "fixed"}

    def _value(self, key: str, value: Any) -> Any:
        """Numbers as floats; other values (nesterov: true) as they are. The optimizer judges them."""
        return value if isinstance(value, (str, bool)) or value is None else self.number(key, value)

    def _check_options(self) -> None:
        """Every name is an argument of the optimizer, and the optimizer accepts both ends of every range."""
        import torch

        lows = {name: d.extremes()[0] for name, d in self.distributions.items()}
        highs = {name: d.extremes()[-1] for name, d in self.distributions.items()}
        try:
            options = [baseline_options(self.optimizer, ends) for ends in (lows, highs)]
            cls = optimizer_class(self.optimizer)
        except ValueError as error:
            raise SearchSpaceError(f"{self.source}: {self.optimizer}: {error}") from None
        for ends in options:
            try:
                cls([torch.nn.Parameter(torch.zeros(1))], **ends)
            except Exception as error:  # optimizers refuse values with ValueError, some with assert
                raise SearchSpaceError(
                    f"{self.source}: {self.optimizer}: {cls.__name__} refuses {ends}: {type(error).__name__}: {error}"
                ) from None
