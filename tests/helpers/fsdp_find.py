"""``find_geometry`` under FSDP2: Lightning's ModelParallelStrategy with 2 CPU processes (gloo), ``fully_shard``
in ``configure_model``. Used by tests/finder/test_finder.py; a script because the strategy re-runs it in every
process.

    python tests/helpers/fsdp_find.py --out DIR

The module is set to p = 2 before the finder; every rank writes to DIR/rank<k>.json whether its parameters,
gathered from their shards after the finder, equal the initial ones, the p the module is left with, whether
it is still sharded, the p of the param groups of its next fit, the pick and the checkpoint files left in DIR.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from sharding import rank_loader, shard_layers
from torch import nn
from torch.utils.data import TensorDataset

from stacey_lightning import StaceyMixin, run
from stacey_lightning.finder import find_geometry


class ShardedRegression(StaceyMixin, pl.LightningModule):
    """MLP 8 -> 16 -> 1, its layers and the whole sharded once, on the first fit of the finder's many."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def configure_model(self) -> None:
        from torch.distributed.fsdp import FSDPModule

        if not isinstance(self, FSDPModule):
            shard_layers(self, self.net)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.net(inputs), targets)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(1)
        inputs = torch.randn(64, 8, generator=generator)
        dataset = TensorDataset(inputs, inputs @ torch.randn(8, 1, generator=generator))
        return rank_loader(dataset, self.trainer, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pl.seed_everything(0, verbose=False)
    module = ShardedRegression()
    module.set_stacey_config({"p": 2.0, "lr": 0.01})
    initial = {name: param.detach().clone() for name, param in module.named_parameters()}
    trainer_kwargs = {"accelerator": "cpu", "devices": 2, "strategy": "fsdp2", "use_distributed_sampler": False,
                      "default_root_dir": str(args.out)}  # fmt: skip
    result = find_geometry(module, max_epochs=2, p_candidates=(4.0, math.inf), trainer_kwargs=trainer_kwargs)
    from torch.distributed.fsdp import FSDPModule

    after = {name: param.full_tensor() for name, param in module.named_parameters()}  # a collective
    record = {
        "same": after.keys() == initial.keys() and all(torch.equal(after[name], initial[name]) for name in initial),
        "p": module.stacey_config().p,
        "sharded": isinstance(module, FSDPModule),
        "parameters": sorted({type(param).__name__ for param in module.parameters()}),
        "pick": [result.p, result.lr, result.steps_used],
        "checkpoints": sorted(path.name for path in args.out.iterdir() if path.name.startswith(".stacey_find")),
    }
    fit = run.make_trainer(max_epochs=1, logger=False, callbacks=[], trainer_kwargs=trainer_kwargs)
    run.fit(fit, module, None, seed=0)
    record["trained_p"] = sorted({group["p"] for group in fit.optimizers[0].param_groups})
    (args.out / f"rank{torch.distributed.get_rank()}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
