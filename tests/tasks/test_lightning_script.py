"""A ``LightningCLI(Model, Data)`` project, whose config names no classes, tuned with its script:
``stacey-tune --lightning-config config.yaml --lightning-script main.py``, then ``python main.py fit --config
config.yaml --config out/best_cli.yaml`` (the unchanged script) trains the best trial again."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import uuid

import pytest
import yaml
from cli_sources import DATA_MODULE_SOURCE

from stacey_lightning import cli
from stacey_lightning.tasks import resolve_task
from stacey_lightning.tasks.lightning_script import LightningFiles

MODULE = (
    """
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import StaceyMixin


class Plain(pl.LightningModule):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def on_train_start(self):
        print("optimizer:", type(self.trainer.optimizers[0]).__name__)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class WithMixin(StaceyMixin, Plain):
    pass


"""
    + DATA_MODULE_SOURCE
)

# The docs' first form: fixed classes, Trainer defaults in the script, the call in a function.
SCRIPT = """
from lightning.pytorch.cli import LightningCLI

from {module} import Data, {model}


def cli_main():
    defaults = {{"max_epochs": 1, "limit_train_batches": 3, "enable_progress_bar": False}}
    LightningCLI({model}, Data, trainer_defaults=defaults, seed_everything_default=5)


if __name__ == "__main__":
    cli_main()
"""

CONFIG = {"model": {"hidden": 16}, "data": {"batch_size": 16}, "trainer": {"accelerator": "cpu"}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Writes module, main.py (for the given module class) and config.yaml in tmp_path, the current folder."""
    name = f"lsproject_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(model: str = "WithMixin") -> None:
        (tmp_path / "main.py").write_text(SCRIPT.format(module=name, model=model))

    yield write
    sys.modules.pop(name, None)


def _fit(tmp_path) -> str:
    """The unchanged script's own fit, in a fresh process: what it prints."""
    command = [sys.executable, "main.py", "fit", "--config", "config.yaml", "--config", "out/best_cli.yaml"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.parametrize("model", ["WithMixin", "Plain"])
def test_a_fixed_class_project_tunes_and_its_script_trains_the_best_trial(project, tmp_path, model):
    project(model)
    task = resolve_task(LightningFiles("config.yaml", "main.py"))
    assert task.max_epochs == 1 and task.trainer_kwargs["limit_train_batches"] == 3  # the script's trainer_defaults
    arguments = ["--lightning-config", "config.yaml", "--lightning-script", "main.py", "--n-trials", "2"]
    assert cli.tune_main([*arguments, "--output", "out"]) == 0
    best = yaml.safe_load((tmp_path / "out" / "best_cli.yaml").read_text())
    assert "class_path" not in best.get("model", {})  # LightningCLI(Model, Data) reads the arguments directly
    printed = _fit(tmp_path)
    assert "optimizer: Stacey" in printed
    # The whole tuned config through StaceyReplay: the trial's value, exactly. For the module without the mixin
    # too: the default space's first anchor is Muon-like (spectral matrices, the rest in Adam's norm), which one
    # param group of LightningCLI's optimizer cannot hold (its injection: test_lightning_config.py).
    assert best["optimizer"] is None
    fit, trial = re.search(r"val_loss = (\S+) \(the tuning trial: (\S+)\)", printed).groups()
    assert fit == trial


def test_a_fixed_class_config_without_its_script_is_one_line_that_asks_for_it(project, capsys):
    project()
    assert cli.tune_main(["--lightning-config", "config.yaml", "--n-trials", "1", "--output", "out"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("stacey-tune: error: config.yaml: model.class_path: missing;")
    assert "--lightning-script main.py" in error


def test_a_script_without_a_lightning_cli_call_is_one_clear_error(project, tmp_path, capsys):
    (tmp_path / "main.py").write_text("print('hello')\n")
    arguments = ["--lightning-config", "config.yaml", "--lightning-script", "main.py", "--n-trials", "1"]
    assert cli.tune_main([*arguments, "--output", "out"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        "stacey-tune: error: main.py: no LightningCLI(...) call found; the script should call "
        'LightningCLI(Model, Data, ...) in a function or under if __name__ == "__main__":'
    )
    assert not (tmp_path / "out").exists()
