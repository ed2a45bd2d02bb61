"""``MuonWithAdamW``: torch.optim.Muon on a model's hidden matrices and torch.optim.AdamW on the rest, as one
optimizer, the way Muon is used (torch's docs, Moonshot's recipe): the peer ``muon`` of the comparisons.

Lightning trains one optimizer per module with automatic optimization, and a comparison must give every
optimizer the same door (``configure_optimizers`` over the groups by kind), so the two live in one
``torch.optim.Optimizer``: its param groups and state are the only ones (a scheduler, a checkpoint and
``LearningRateMonitor`` see them as usual), and each step hands every group to the torch optimizer that
owns its kind. Muon scales its update to AdamW's RMS (``adjust_lr_fn="match_rms_adamw"``), so the two
share one lr and one weight decay, as Moonshot tunes them.

A group goes to Muon when ``muon`` is True in it; by default, when every parameter in it is 2-D and the
group is not the output head or an embedding or vector kind (``name == "head"``, ``kind`` from
``lightning.param_groups``). torch.optim.Muon accepts 2-D parameters only: convolutions go to AdamW.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import AdamW, Muon, Optimizer

__all__ = ["MuonWithAdamW"]

_NOT_HIDDEN = ("embedding", "vector")


class MuonWithAdamW(Optimizer):
    """torch.optim.Muon (nesterov, match_rms_adamw) on hidden matrices, torch.optim.AdamW on the rest.

    Args:
        params: parameters or groups; a group may say ``muon: True/False``, else it is decided from
            its parameters' shapes and its ``name``/``kind`` (see the module's docstring).
        lr: one learning rate for both (Muon's is scaled to AdamW's update RMS). Default 3e-3.
        weight_decay: decoupled weight decay for both. Default 1e-2.
        momentum: Muon's momentum (Nesterov). Default 0.95.
        betas: AdamW's betas. Default (0.9, 0.95) (Moonshot's).
        eps: AdamW's eps. Default 1e-8.
        ns_steps: Muon's Newton-Schulz iterations. Default 5.
    """

    # Asks StaceyMixin for the output head in a group of its own ("head"), which goes to AdamW.
    output_head_apart = True

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 3e-3,
        weight_decay: float = 1e-2,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        ns_steps: int = 5,
    ) -> None:
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, betas=tuple(betas), eps=eps,
                        ns_steps=ns_steps)  # fmt: skip
        super().__init__(params, defaults)  # a model without hidden matrices trains with AdamW alone
        self._workers()

    def _workers(self) -> dict[bool, Optimizer]:
        """The torch optimizers that do the work, by ``muon``: built on this optimizer's own group dicts
        (their constructors fill in their defaults once), and handed its current groups and state at every
        step, so that a loaded state_dict or a copy of this optimizer is what they use (a copy, which
        torch's __getstate__ makes without them, builds its own)."""
        workers = self.__dict__.get("_worker_optimizers")
        if workers is None:
            settings = self.defaults
            muon = [g for g in self.param_groups if g["muon"]]
            rest = [g for g in self.param_groups if not g["muon"]]
            workers = {}
            if muon:
                workers[True] = Muon(muon, lr=settings["lr"], weight_decay=settings["weight_decay"],
                                     momentum=settings["momentum"], nesterov=True, ns_steps=settings["ns_steps"],
                                     adjust_lr_fn="match_rms_adamw")  # fmt: skip
            if rest:
                workers[False] = AdamW(rest, lr=settings["lr"], weight_decay=settings["weight_decay"],
                                       betas=settings["betas"], eps=settings["eps"])  # fmt: skip
            self.__dict__["_worker_optimizers"] = workers
        return workers

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if "muon" not in group:
            group["muon"] = (
                group.get("kind") not in _NOT_HIDDEN
                and group.get("name") != "head"
                and all(param.ndim == 2 for param in group["params"])
            )
        if group["muon"] and any(param.ndim != 2 for param in group["params"]):
            raise ValueError("MuonWithAdamW: a group with muon=True holds a parameter that is not 2-D")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One step of each group with its own torch optimizer; returns the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for wanted, worker in self._workers().items():
            worker.param_groups = [group for group in self.param_groups if group["muon"] is wanted]
            worker.state = self.state
            worker.step()
        return loss
