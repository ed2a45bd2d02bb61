"""LightningCLI choosing Stacey by class path, for any LightningModule with typed __init__ arguments.

    python examples/lightning_cli.py fit --optimizer stacey_lightning.Stacey --optimizer.p 4 \\
        --optimizer.lr 0.01 --trainer.max_epochs 5
    python examples/lightning_cli.py fit --print_config    # the same as YAML, for --config

With --optimizer, LightningCLI builds Stacey itself from model.parameters() (one param group) and
replaces the module's configure_optimizers, so StaceyMixin's per-kind groups and schedule are not
used; pick a schedule with --lr_scheduler (it is stepped per epoch). Without --optimizer, the module's
own StaceyMixin configuration applies.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from stacey_lightning.tasks.digits import DigitsDataModule, DigitsModule


def main(args: list[str] | None = None) -> LightningCLI:
    return LightningCLI(DigitsModule, DigitsDataModule, args=args, save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
