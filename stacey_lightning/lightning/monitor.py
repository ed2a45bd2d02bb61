"""``StaceyMonitor``: a callback that logs Stacey's geometry per param group, to every logger.

Every ``every_n_steps`` optimizer steps, for each param group (named by its ``name``, else its
``kind``, else its index), under ``stacey/<group>/``:
    p               the exponent in use (l_p groups; a spectral or Adam group's norms below are l_2 norms)
    step_norm       ||x_after - x_before||_p, the l_p norm of the step actually applied
    x_minus_z_norm  ||x - z||_p after the step, the distance between primal and dual iterate
    grad_dual_norm  ||g||_p* with p* = p / (p - 1), of the gradient before clipping
Norms of a group are over all its tensors together, sharded ones (FSDP2) whole. Every process
computes them (for sharded tensors they are collectives); the loggers write on rank zero only.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from stacey_lightning.optim.optimizer import Stacey

__all__ = ["StaceyMonitor", "group_norm", "dual_exponent"]


def dual_exponent(p: float) -> float:
    """p* = p / (p - 1), with p* = 1 at p = inf."""
    return 1.0 if p == float("inf") else p / (p - 1.0)


def group_norm(tensors: list[Tensor], p: float) -> Tensor:
    """The l_p norm of the concatenation of ``tensors``, as a 0-d tensor (no host synchronisation).

    A sharded tensor (FSDP2's DTensor) contributes the norm of the whole tensor: each process reduces
    its shard and one all-reduce of a scalar combines them, so every process must call this.
    """
    norms = [torch.linalg.vector_norm(t, p) for t in tensors]
    return torch.linalg.vector_norm(torch.stack([_whole(norm) for norm in norms]), p)


def _whole(norm: Tensor) -> Tensor:
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm


class StaceyMonitor(Callback):
    """Log p, the applied step, ||x - z|| and the gradient's dual norm per param group.

    Args:
        every_n_steps: log on optimizer steps whose index (trainer.global_step before the step)
            is a multiple of it; the first step is logged. Default 50.

    On other steps it does nothing but compare two integers: no tensor is read, copied or synchronised.
    On logging steps it keeps one copy of the parameters from before the step. ``latest`` holds the
    last logged values (a dict of floats).
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if not (isinstance(every_n_steps, int) and every_n_steps >= 1):
            raise ValueError(f"Invalid every_n_steps: {every_n_steps!r} (must be an integer >= 1)")
        self.every_n_steps = every_n_steps
        self.latest: dict[str, float] = {}
        self._pending: dict[str, Any] | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not any(isinstance(optimizer, Stacey) for optimizer in trainer.optimizers):
            raise ValueError(
                "StaceyMonitor needs a Stacey optimizer: use StaceyMixin or return Stacey from "
                "configure_optimizers, or remove the callback"
            )

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        # Every process computes (the norms of sharded parameters are collectives); loggers write on rank 0.
        if trainer.global_step % self.every_n_steps or not isinstance(optimizer, Stacey):
            return
        groups = []
        for group in optimizer.param_groups:
            params = [param for param in group["params"] if param.grad is not None]
            if not params:
                continue
            groups.append(
                {
                    "group": group,
                    "params": params,
                    "before": [param.detach().clone() for param in params],
                    "grad_dual_norm": group_norm(
                        [param.grad.detach() for param in params], dual_exponent(_monitored_p(group))
                    ),
                }
            )
        self._pending = {"step": trainer.global_step, "optimizer": optimizer, "groups": groups}

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        state = pending["optimizer"].state
        metrics = {}
        for index, entry in enumerate(pending["groups"]):
            group, params = entry["group"], entry["params"]
            p = _monitored_p(group)
            name = f"stacey/{group.get('name', group.get('kind', index))}"
            step = group_norm([param.detach() - before for param, before in zip(params, entry["before"])], p)
            x_minus_z = group_norm([param.detach() - state[param]["z"] for param in params], p)
            if group.get("norm", "lp") == "lp":
                metrics[f"{name}/p"] = float(p)
            metrics[f"{name}/step_norm"] = step.item()
            metrics[f"{name}/x_minus_z_norm"] = x_minus_z.item()
            metrics[f"{name}/grad_dual_norm"] = entry["grad_dual_norm"].item()
        self.latest = metrics
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=pending["step"])


def _monitored_p(group: dict[str, Any]) -> float:
    """The l_p norm a group's norms are measured in: its p, or 2 (Frobenius) for a spectral group, whose own
    norms would need an SVD of every matrix at every logged step, and for an Adam group, whose own norm moves
    with v at every step."""
    return group["p"] if group.get("norm", "lp") == "lp" else 2.0
