import sys
from pathlib import Path

import pytest

from stacey_lightning import Stacey

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
from lightning_cli import main  # noqa: E402

QUIET = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "3",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.logger",
    "false",
    "--trainer.enable_checkpointing",
    "false",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--model.hidden",
    "16",
]


def test_optimizer_by_class_path(tmp_path):
    with pytest.warns(UserWarning, match="configure_optimizers` will be overridden"):
        cli = main(
            [
                "fit",
                "--optimizer",
                "stacey_lightning.Stacey",
                "--optimizer.p",
                "4",
                "--optimizer.lr",
                "0.01",
                "--optimizer.foreach",
                "true",
                "--trainer.default_root_dir",
                str(tmp_path),
                *QUIET,
            ]
        )
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, Stacey)
    assert (optimizer.defaults["p"], optimizer.defaults["lr"], optimizer.defaults["foreach"]) == (4.0, 0.01, True)
    assert cli.trainer.global_step == 3


def test_optimizer_from_yaml_config_and_mixin_without_optimizer(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "optimizer:\n  class_path: stacey_lightning.Stacey\n"
        "  init_args: {p: 3.0, alpha: 0.2, betas: [0.8, 0.95], variant: pp, foreach: true}\n"
    )
    cli = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path), *QUIET])
    group = cli.trainer.optimizers[0].param_groups[0]
    assert (group["p"], group["alpha"], group["betas"], group["variant"]) == (3.0, 0.2, (0.8, 0.95), "pp")
    # Without --optimizer the module's own StaceyMixin config applies: per-kind groups, lr from --model.lr.
    cli = main(
        ["fit", "--model.lr", "0.05", "--model.foreach", "true", "--trainer.default_root_dir", str(tmp_path), *QUIET]
    )
    groups = cli.trainer.optimizers[0].param_groups
    assert [(group["kind"], group["lr"]) for group in groups] == [("matrix", 0.05), ("vector", 0.05)]
