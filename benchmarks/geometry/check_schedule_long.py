"""Trace lr/alpha/tau and val_bpc per epoch of the long (8-epoch, 200 KB) warmup_cosine run."""

import sys

sys.path.insert(0, "benchmarks/geometry")
import lightning.pytorch as pl
import torch
from experiments import INF, long, lp, with_schedule
from lightning.pytorch.callbacks import Callback
from runner import build


class Trace(Callback):
    def on_train_start(self, trainer, module):
        print("estimated_stepping_batches", trainer.estimated_stepping_batches, flush=True)

    def on_before_optimizer_step(self, trainer, module, optimizer):
        s = trainer.global_step
        if s % 86 == 0 or s in (1375,):
            g = optimizer.param_groups[0]
            lr, alpha, tau = g["lr"], optimizer._dual_step(g), optimizer._tau(g)
            print(s, f"lr {lr:.3g} alpha {alpha:.3g} tau {tau:.3g}", flush=True)

    def on_train_epoch_end(self, trainer, module):
        print(
            "epoch",
            trainer.current_epoch,
            {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()},
            flush=True,
        )


torch.set_num_threads(1)
spec = long(with_schedule(lp(INF, 2e-3), sys.argv[1] if len(sys.argv) > 1 else "wc"))
module, data = build(spec)
trainer = pl.Trainer(
    max_epochs=8,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[Trace()],
    num_sanity_val_steps=0,
)
trainer.fit(module, data)
