"""Print the lr, alpha and tau Stacey actually uses along a warmup_cosine run, and val_bpc per epoch."""

import sys

sys.path.insert(0, "benchmarks/geometry")
import lightning.pytorch as pl
import torch
from experiments import lp, with_schedule
from lightning.pytorch.callbacks import Callback
from runner import build


class Trace(Callback):
    def on_before_optimizer_step(self, trainer, module, optimizer):
        s = trainer.global_step
        if s in (0, 5, 12, 13, 14, 50, 100, 130, 200, 250, 264):
            g = optimizer.param_groups[0]
            lr, alpha, tau = g["lr"], optimizer._dual_step(g), optimizer._tau(g)
            print(s, f"lr {lr:.3g} alpha {alpha:.3g} tau {tau:.3g}", flush=True)

    def on_validation_epoch_end(self, trainer, module):
        print(
            "epoch",
            trainer.current_epoch,
            "val_bpc",
            float(trainer.callback_metrics.get("val_bpc", float("nan"))),
            flush=True,
        )


torch.set_num_threads(1)
spec = with_schedule(lp(4, 0.08, tau=round(1 / 265, 6), alpha=0.8), "wc_tau")
module, data = build(spec)
trainer = pl.Trainer(
    max_epochs=5,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    callbacks=[Trace()],
    num_sanity_val_steps=0,
)
trainer.fit(module, data)
