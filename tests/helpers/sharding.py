"""What the multi-process helpers share: FSDP2 sharding of a module's layers, and a data loader whose
rank batches together are exactly the single-process batch (so runs on 1 and 2 processes compare)."""

from __future__ import annotations

import lightning.pytorch as pl
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def shard_layers(module: pl.LightningModule, layers: nn.Module) -> None:
    """``fully_shard`` each layer that has parameters, then the whole module, over the data-parallel mesh
    of Lightning's ModelParallelStrategy; nothing on one process (no mesh)."""
    if module.device_mesh is None:
        return
    from torch.distributed.fsdp import fully_shard

    mesh = module.device_mesh["data_parallel"]
    for layer in layers:
        if any(True for _ in layer.parameters()):
            fully_shard(layer, mesh=mesh)
    fully_shard(module, mesh=mesh)


def rank_loader(dataset: Dataset, trainer: pl.Trainer, global_batch: int) -> DataLoader:
    """Unshuffled, each rank takes every world_size-th sample (Lightning's own sampler shuffles), so one
    step's rank batches together are exactly the single-process batch of ``global_batch`` samples."""
    world_size = trainer.world_size
    sampler = DistributedSampler(dataset, world_size, trainer.global_rank, shuffle=False)
    batch_size = global_batch // (world_size * trainer.accumulate_grad_batches)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler)
