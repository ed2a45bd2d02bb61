"""1 epoch (172 steps) of the long textlm: lion-pytorch Lion and AdamW, constant vs 69-step linear warmup then flat."""

import sys
import types

sys.path.insert(0, "benchmarks/geometry")
import lightning.pytorch as pl
import torch
from lion_pytorch import Lion
from torch.optim.lr_scheduler import LambdaLR

from stacey_lightning.schedule import WarmupCosine
from stacey_lightning.tasks.textlm import make_textlm

torch.set_num_threads(1)
for name, cls, lr, wd in (("lion", Lion, 2e-3, 0.01), ("adamw", torch.optim.AdamW, 3e-3, 0.01)):
    for warm in (0, 69, 20):
        pl.seed_everything(0, verbose=False)
        module, data = make_textlm(size="small", batch_size=16, max_chars=200_000, seed=0, foreach=True)

        def configure(self, cls=cls, lr=lr, wd=wd, warm=warm):
            opt = cls(self.parameters(), lr=lr, weight_decay=wd)
            if not warm:
                return opt
            sched = LambdaLR(opt, WarmupCosine(warm, 1376, 1.0))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        module.configure_optimizers = types.MethodType(configure, module)
        trainer = pl.Trainer(
            max_epochs=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, data)
        print(
            name,
            "warmup",
            warm,
            "val_bpc after 172 steps",
            round(float(trainer.callback_metrics["val_bpc"]), 4),
            flush=True,
        )
