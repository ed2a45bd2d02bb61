"""Train a small regression model with Stacey's default (fused) path under FSDP2: Lightning's
ModelParallelStrategy with 2 CPU processes (gloo), ``fully_shard`` in ``configure_model``. Used by
tests/lightning/test_fsdp2.py; a script because the strategy re-runs it in every process.

    python tests/helpers/fsdp_train.py --out DIR

In one launch it fits (a) 2 epochs, (b) 1 epoch and saves Lightning's distributed checkpoint, then
(c) resumes (b) to 2 epochs; rank 0 writes the full parameters and optimizer state of (a) and (c),
and every rank its parameter groups' kinds and sizes and what StaceyMonitor logged in (a), to DIR.
Then (d) fits 2 epochs with the hidden matrix in the spectral norm (its rows sharded over the two
processes), declared as three stacked maps of 4 rows (one of which straddles the shards), and writes its
full state too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from sharding import rank_loader, shard_layers
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import StaceyMixin, StaceyMonitor
from stacey_lightning.optim import _cpu_kernel

SAMPLES = 64
GLOBAL_BATCH = 16
C_KERNEL_KINDS: list[str] = []  # the direction kinds the C kernel was bound for, step by step ("adam": Adam's norm)
_bind, _bind_adam = _cpu_kernel.bind, _cpu_kernel.bind_adam
_cpu_kernel.bind = lambda function, kind, scalars: (C_KERNEL_KINDS.append(kind), _bind(function, kind, scalars))[1]
_cpu_kernel.bind_adam = lambda function, scalars: (C_KERNEL_KINDS.append("adam"), _bind_adam(function, scalars))[1]
CONFIG = {"p": 3.0, "lr": 0.02, "tau": 0.05, "weight_decay": 0.01, "kinds": {"matrix": {"p": 4.5}}}
# The 12 x 8 matrix in the spectral norm; the head and the vectors in Adam's (elementwise on the shards); evaluated
# and saved at the average of the weights (the optimizer's eval mode on the shards).
SPECTRAL = {**CONFIG, "norm": "adam", "kinds": {"matrix": {"norm": "spectral"}}, "average_horizon": 0.5}


class ShardedRegression(StaceyMixin, pl.LightningModule):
    """MLP 8 -> 12 -> 1 with a LayerNorm, each layer and the whole sharded with FSDP2 over the data-parallel mesh;
    its hidden weight declared as ``stacked`` maps (as a fused q, k, v projection is)."""

    def __init__(self, config: dict = CONFIG, stacked: int = 1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 12), nn.LayerNorm(12), nn.Tanh(), nn.Linear(12, 1))
        self.stacked = stacked
        self.set_stacey_config(config)

    def stacey_stacked_matrices(self) -> dict[torch.Tensor, int]:
        return {**super().stacey_stacked_matrices(), self.net[0].weight: self.stacked}

    def configure_model(self) -> None:
        shard_layers(self, self.net)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.net(inputs), targets)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randn(SAMPLES, 8, generator=generator)
        dataset = TensorDataset(inputs, inputs @ torch.randn(8, 1, generator=generator))
        return rank_loader(dataset, self.trainer, GLOBAL_BATCH)


class SaveAfterFirstEpoch(pl.Callback):
    """A checkpoint in the middle of a run, at its first training epoch's end: the optimizer in train mode."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == 0:
            trainer.save_checkpoint(self.path)


def trainer(devices: int, max_epochs: int, root: Path, callbacks: list | None = None) -> pl.Trainer:
    strategy = ModelParallelStrategy(data_parallel_size=2, tensor_parallel_size=1) if devices > 1 else "auto"
    return pl.Trainer(accelerator="cpu", devices=devices, strategy=strategy, max_epochs=max_epochs, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      use_distributed_sampler=False, default_root_dir=root, deterministic=True,
                      callbacks=[StaceyMonitor(every_n_steps=4), *(callbacks or [])])  # fmt: skip


def monitored(trainer: pl.Trainer) -> dict[str, float]:
    """What StaceyMonitor logged last (p, step, ||x - z|| and the gradient's norm per group)."""
    return next(callback for callback in trainer.callbacks if isinstance(callback, StaceyMonitor)).latest


def full_state(module: ShardedRegression, trainer: pl.Trainer) -> dict:
    """Parameters, z, m (and Adam's v, and the average or the iterate it was swapped with) as full tensors
    (gathered from the shards; a collective: every rank calls it)."""

    def full(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor.detach().clone()

    optimizer = trainer.optimizers[0]
    state = {}
    for name, param in module.named_parameters():
        state[name] = full(param)
        for key in ("z", "m", "v", "average"):
            if key in optimizer.state[param]:
                state[f"{name}.{key}"] = full(optimizer.state[param][key])
    return state


def groups(trainer: pl.Trainer) -> list[dict]:
    return [
        {
            "kind": g["kind"],
            "p": g["p"],
            "norm": g["norm"],
            "numel": sum(p.numel() for p in g["params"]),
            "blocks": g["blocks"],
        }
        for g in trainer.optimizers[0].param_groups
    ]


def fit(
    devices: int,
    max_epochs: int,
    root: Path,
    ckpt_path: str | None = None,
    config: dict = CONFIG,
    stacked: int = 1,
    callbacks: list | None = None,
) -> tuple:
    pl.seed_everything(0)
    module = ShardedRegression(config, stacked)
    fitted = trainer(devices, max_epochs, root, callbacks)
    fitted.fit(module, ckpt_path=ckpt_path)
    return module, fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    module, uninterrupted = fit(2, 2, args.out)
    whole = full_state(module, uninterrupted)
    (args.out / f"groups-rank{uninterrupted.global_rank}.json").write_text(json.dumps(groups(uninterrupted)))
    (args.out / f"monitor-rank{uninterrupted.global_rank}.json").write_text(json.dumps(monitored(uninterrupted)))
    _, first = fit(2, 1, args.out)
    first.save_checkpoint(args.out / "epoch1.ckpt")
    module, resumed = fit(2, 2, args.out, ckpt_path=str(args.out / "epoch1.ckpt"))
    again = full_state(module, resumed)
    if resumed.global_rank == 0:
        from stacey_lightning.optim._fused import RUNTIME

        # Which path stepped: the default must be the fused one (the C kernel in float32 on the CPU, else
        # the compiled one), with no fallback to foreach.
        fused = {"kernels": len(RUNTIME.kernels), "c_kernel": sorted(set(C_KERNEL_KINDS)),
                 "disabled_reason": RUNTIME.disabled_reason}  # fmt: skip
        torch.save({"uninterrupted": whole, "resumed": again, "steps": resumed.global_step, "fused": fused},
                   args.out / "fsdp2.pt")  # fmt: skip
    # Saved within the run (a run of one epoch would average with another decay: the horizon is the run's), in
    # train mode: the checkpoint holds the average in the weights' place, the optimizer's state the iterate.
    checkpoint = args.out / "epoch1-spectral.ckpt"
    save = SaveAfterFirstEpoch(checkpoint)
    module, spectral = fit(2, 2, args.out, config=SPECTRAL, stacked=3, callbacks=[save])
    whole = full_state(module, spectral)
    module, resumed = fit(2, 2, args.out, ckpt_path=str(checkpoint), config=SPECTRAL, stacked=3)
    again = full_state(module, resumed)
    if spectral.global_rank == 0:
        torch.save({"uninterrupted": whole, "resumed": again, "groups": groups(spectral),
                    "c_kernel": sorted(set(C_KERNEL_KINDS))}, args.out / "fsdp2_spectral.pt")  # fmt: skip


if __name__ == "__main__":
    main()
