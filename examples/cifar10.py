"""Train ResNet-18 (adapted to 32x32) on CIFAR-10 with Stacey, logging to TensorBoard.

    python examples/cifar10.py --download --max-epochs 30 --p 2 --lr 0.5     # first run: fetches ~170 MB
    python examples/cifar10.py --data-dir /data/cifar10 --max-epochs 30      # an existing copy
    tensorboard --logdir runs/cifar10     # train_loss, val_loss, val_acc and stacey/<kind>/... curves

--data-dir is a folder holding cifar-10-batches-py (default ~/.cache/stacey-lightning/cifar10).
Wants a GPU: an epoch takes minutes there, hours on a CPU. To start a task of your own, copy
stacey_lightning/tasks/cifar10.py (the module, the data and make_cifar10) and this script.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
from lightning.pytorch.loggers import TensorBoardLogger

from stacey_lightning import StaceyMonitor
from stacey_lightning.tasks.cifar10 import LR, P, make_cifar10


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train and return the final logged metrics (val_acc, val_loss, train_loss) as floats."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30, help="training epochs (default 30)")
    parser.add_argument("--p", type=float, default=P, help=f"Stacey's exponent, > 1 or inf (default {P:g})")
    parser.add_argument("--lr", type=float, default=LR, help=f"Stacey's primal step (default {LR:g})")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder holding cifar-10-batches-py (default ~/.cache/stacey-lightning/cifar10)",
    )
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 if missing (needs network)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--num-workers", type=int, default=2, help="data-loading processes (default 2)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="offline check on a few random images instead of CIFAR-10, for tests: its accuracy means nothing",
    )
    parser.add_argument("--output", default="runs/cifar10", help="TensorBoard log directory (default runs/cifar10)")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order (default 0)")
    args = parser.parse_args(argv)

    module, data = make_cifar10(
        data_dir=args.data_dir,
        download=args.download,
        smoke=args.smoke,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        p=args.p,
        lr=args.lr,
    )
    # Constant lr (the config's default schedule): under warmup_cosine the lr decays to 0 while tau keeps
    # pulling x toward the dual iterate z, and on textlm the loss rose again over the last half of training.
    logger = TensorBoardLogger(args.output, name="", default_hp_metric=False)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        logger=logger,
        log_every_n_steps=50,
        callbacks=[StaceyMonitor(every_n_steps=100)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    print(
        f"val_acc {metrics['val_acc']:.4f}  val_loss {metrics['val_loss']:.3f}  (TensorBoard logs in {logger.log_dir})"
    )
    return metrics


if __name__ == "__main__":
    main()
