"""1 epoch of the long textlm (172 steps), Lion-like Stacey lr 2e-3: constant vs warmup+flat vs warmup_cosine,
with the schedule's total steps set as for 8 epochs (so the lr over this epoch matches the long run)."""

import sys

sys.path.insert(0, "benchmarks/geometry")
import lightning.pytorch as pl
import torch
from experiments import INF, long, lp
from runner import build

torch.set_num_threads(1)
for label, schedule in (
    ("const", None),
    ("warmup69_flat", {"name": "warmup_cosine", "warmup_steps": 69, "min_lr_ratio": 1.0}),
    ("warmup0_cosine1376", {"name": "warmup_cosine", "warmup_steps": 0, "min_lr_ratio": 0.0}),
    ("warmup69_cosine1376", {"name": "warmup_cosine", "warmup_steps": 69, "min_lr_ratio": 0.0}),
):
    spec = long(lp(INF, 2e-3))
    if schedule:
        spec["config"]["schedule"] = schedule
    module, data = build(spec)
    module._stacey_total_steps = lambda config: 1376.0
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, data)
    print(label, "val_bpc after 172 steps", round(float(trainer.callback_metrics["val_bpc"]), 4), flush=True)
