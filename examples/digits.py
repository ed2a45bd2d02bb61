"""Train an MLP on scikit-learn's digits with Stacey through StaceyMixin, on CPU, logging to TensorBoard.

    python examples/digits.py --max-epochs 10 --p 4 --lr 0.03
    tensorboard --logdir runs/digits     # train_loss, val_loss, val_acc and stacey/<kind>/... curves

Takes well under a minute on a laptop CPU.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from stacey_lightning import StaceyMonitor
from stacey_lightning.tasks.digits import make_digits


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train and return the final logged metrics (val_acc, val_loss, train_loss) as floats."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=10, help="training epochs (default 10)")
    parser.add_argument("--p", type=float, default=4.0, help="Stacey's exponent, > 1 or inf (default 4)")
    parser.add_argument("--lr", type=float, default=0.03, help="Stacey's primal step (default 0.03)")
    parser.add_argument("--output", default="runs/digits", help="TensorBoard log directory (default runs/digits)")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order (default 0)")
    args = parser.parse_args(argv)

    # foreach: this model is too small for the compiled kernel to repay its compile time.
    module, data = make_digits(seed=args.seed, p=args.p, lr=args.lr, foreach=True)
    # A constant lr, as the presets use: at budgets like this one a decaying schedule spends training
    # time (docs/lightning.md, Schedules). To try one, give tau_follows_lr with it:
    # module.set_stacey_config({"schedule": {"name": "warmup_cosine"}, "tau_follows_lr": True})
    logger = TensorBoardLogger(args.output, name="", default_hp_metric=False)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=10,
        callbacks=[StaceyMonitor(every_n_steps=10)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    print(
        f"val_acc {metrics['val_acc']:.3f}  val_loss {metrics['val_loss']:.3f}  (TensorBoard logs in {logger.log_dir})"
    )
    return metrics


if __name__ == "__main__":
    main()
