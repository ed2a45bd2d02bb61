"""Train a character-level transformer on Python's own standard-library source with Stacey, logging to TensorBoard.

    python examples/textlm.py --max-epochs 3 --p 3 --lr 0.3
    tensorboard --logdir runs/textlm     # train_loss, val_loss, val_bpc and stacey/<kind>/... curves

The text ships with Python (no download). The default "small" model trains on a laptop CPU (an epoch
is about 180 steps); --size large wants a GPU. To start a task of your own, copy
stacey_lightning/tasks/textlm.py (the module, the data and make_textlm) and this script.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from stacey_lightning import StaceyMonitor
from stacey_lightning.tasks.textlm import LR, SIZES, P, make_textlm


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train and return the final logged metrics (val_bpc, val_loss, train_loss) as floats."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--p", type=float, default=P, help=f"Stacey's exponent, > 1 or inf (default {P:g})")
    parser.add_argument("--lr", type=float, default=LR, help=f"Stacey's primal step (default {LR:g})")
    parser.add_argument("--size", choices=tuple(SIZES), default="small", help="model size (default small)")
    parser.add_argument("--context", type=int, default=64, help="characters per window (default 64)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step (default 32)")
    parser.add_argument("--max-chars", type=int, default=None, help="bytes of text to use (default: all)")
    parser.add_argument("--output", default="runs/textlm", help="TensorBoard log directory (default runs/textlm)")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order (default 0)")
    args = parser.parse_args(argv)

    # foreach: the small model is too small for the compiled kernel to repay its compile time.
    module, data = make_textlm(
        size=args.size,
        context=args.context,
        batch_size=args.batch_size,
        max_chars=args.max_chars,
        seed=args.seed,
        p=args.p,
        lr=args.lr,
        foreach=True if args.size == "small" else None,
    )
    # Constant lr (the config's default schedule): under warmup_cosine the lr decays to 0 while tau keeps
    # pulling x toward the dual iterate z, and on textlm the loss rose again over the last half of training.
    logger = TensorBoardLogger(args.output, name="", default_hp_metric=False)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=logger,
        log_every_n_steps=10,
        callbacks=[StaceyMonitor(every_n_steps=50)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    print(
        f"val_bpc {metrics['val_bpc']:.3f}  val_loss {metrics['val_loss']:.3f}  (TensorBoard logs in {logger.log_dir})"
    )
    return metrics


if __name__ == "__main__":
    main()
