"""A callback that records the first optimizer's first group's ``train_mode`` where Lightning trains and validates:
what an optimizer with an averaged point (Schedule-Free, Stacey's average) is switched to."""

import lightning.pytorch as pl


class RecordModes(pl.Callback):
    def __init__(self) -> None:
        self.seen: dict[str, list[bool]] = {"training": [], "validation": []}

    def on_validation_start(self, trainer, pl_module):
        if trainer.sanity_checking:  # before the first step there is no average: nothing to switch to
            return
        self.seen["validation"].append(trainer.optimizers[0].param_groups[0]["train_mode"])

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen["training"].append(trainer.optimizers[0].param_groups[0]["train_mode"])
