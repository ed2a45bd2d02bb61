"""``GradStats``: how large gradients, momenta, weights and c are per coordinate, at a few steps of a run.

geometry.md §0 is made of its records: |c| (c = 0.9 m + 0.1 g, what Stacey's step sees) is what sets
the lr for each p. With ``dump``, it also saves c itself at its last step, for ``lr_transfer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

__all__ = ["GradStats"]


def _magnitudes(tensors: list[torch.Tensor]) -> dict[str, float | None]:
    flat = torch.cat([t.reshape(-1).abs().float() for t in tensors])
    return {
        "median": flat.median().item(),
        "mean": flat.mean().item(),
        "rms": flat.pow(2).mean().sqrt().item(),
        "p90": flat.quantile(0.9).item() if flat.numel() < 16_000_000 else None,  # torch.quantile's size limit
    }


class GradStats(Callback):
    """Records the median, mean, rms and 90th percentile of |g|, |m|, |x| and |c| before the optimizer
    steps at ``steps`` (and the median |g| per kind of parameter) in ``records``; with ``dump``, saves
    {parameter name: c} at the last of ``steps`` to that file."""

    def __init__(self, steps: Iterable[int] = (5, 50, 150, 260), dump: str | None = None) -> None:
        self.at = set(steps)
        self.dump = dump
        self.records: list[dict[str, Any]] = []

    @override
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        step = trainer.global_step
        if step not in self.at:
            return
        with_state = [p for p in pl_module.parameters() if p in optimizer.state and "m" in optimizer.state[p]]
        record: dict[str, Any] = {"step": step}
        for label, tensors in (
            ("g", [p.grad for p in pl_module.parameters() if p.grad is not None]),
            ("m", [optimizer.state[p]["m"] for p in with_state]),
            ("x", [p.detach() for p in pl_module.parameters()]),
            ("c", [0.9 * optimizer.state[p]["m"] + 0.1 * p.grad for p in with_state]),
        ):
            if tensors:
                record[label] = _magnitudes(tensors)
        by_kind: dict[str, list[torch.Tensor]] = {}
        for name, p in pl_module.named_parameters():
            if p.grad is not None:
                kind = "embed" if "embedding" in name else ("vector" if p.ndim <= 1 else "matrix")
                by_kind.setdefault(kind, []).append(p.grad.reshape(-1).abs())
        record["g_by_kind_median"] = {kind: torch.cat(grads).median().item() for kind, grads in by_kind.items()}
        if self.dump and step == max(self.at):
            c = {
                name: (0.9 * optimizer.state[p]["m"] + 0.1 * p.grad).clone()
                for name, p in pl_module.named_parameters()
                if p in optimizer.state
            }
            Path(self.dump).parent.mkdir(parents=True, exist_ok=True)
            torch.save(c, self.dump)
        self.records.append(record)
