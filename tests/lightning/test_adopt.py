"""``adopt``: any LightningModule trains with Stacey, its groups by kind and schedule, without editing its class;
``StaceyReplay``: a LightningCLI fit gets the tuned config and the trials' random state."""

from __future__ import annotations

import copy
import os
import pickle
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import Stacey, StaceyMixin
from stacey_lightning.lightning import adopt as adopt_module
from stacey_lightning.lightning.adopt import adopt
from stacey_lightning.lightning.replay import StaceyReplay


class Net(pl.LightningModule):
    """A module as Lightning's docs write one: its own optimizer and checkpoint hook."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)
        self.saved = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.norm(self.layer(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["net"] = "saved by Net"


class Manual(Net):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    return DataLoader(
        TensorDataset(torch.randn(32, 4, generator=generator), torch.randn(32, 3, generator=generator)), batch_size=8
    )


def _trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        accelerator="cpu", **kwargs,
    )  # fmt: skip


def test_adopted_module_trains_with_stacey_groups_by_kind_and_its_config():
    module = adopt(Net())
    assert isinstance(module, StaceyMixin) and isinstance(module, Net) and type(module).__name__ == "Net"
    module.set_stacey_config({"p": 3.0, "lr": 0.02, "weight_decay": 0.1})
    trainer = _trainer()
    trainer.fit(module, _loader())
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, Stacey)
    groups = {group["kind"]: group for group in optimizer.param_groups}
    assert set(groups) == {"matrix", "vector"}
    assert (groups["matrix"]["p"], groups["matrix"]["lr"], groups["matrix"]["weight_decay"]) == (3.0, 0.02, 0.1)
    assert groups["vector"]["weight_decay"] == 0.0  # the mixin's rule: no decay on biases and norms
    assert adopt(module) is module and type(adopt(Net())) is type(module)  # one subclass per class


def test_adoption_is_said_once_per_class(monkeypatch):
    monkeypatch.setattr(adopt_module, "_WARNED", set())
    with pytest.warns(UserWarning, match="Net has no StaceyMixin: its configure_optimizers is replaced"):
        adopt(Net())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adopt(Net())


def test_manual_optimization_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^Manual uses manual optimization \(automatic_optimization = False\), or "):
        adopt(Manual())


def test_an_adopted_module_pickles_and_copies_as_itself():
    module = adopt(Net())
    module.set_stacey_config({"p": 5.0})
    for copied in (pickle.loads(pickle.dumps(module)), copy.deepcopy(module)):
        assert type(copied) is type(module) and copied.stacey_config().p == 5.0
        assert torch.equal(copied.layer.weight, module.layer.weight)


def test_the_modules_own_checkpoint_hook_still_runs():
    module = adopt(Net())
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["net"] == "saved by Net" and checkpoint["stacey_config"]["p"] == 4.0


def _callables_on_the_instance(module) -> list[str]:
    """What the instance itself holds that can be called: a method set on it, shadowing its class's."""
    return sorted(name for name, value in vars(module).items() if callable(value))


def test_adopting_training_and_replaying_set_no_method_on_the_users_module():
    """A method set on an instance is lost or breaks when the module is pickled (ddp_spawn, workers) or
    copied: adopt changes the class and the config is data, through a whole fit and through the replay's own
    adoption (tests/test_architecture.py checks the optimizer-choice door the same way)."""
    adopted = adopt(Net())
    adopted.set_stacey_config({"p": 3.0})
    trainer = _trainer()
    trainer.fit(adopted, _loader())
    replayed = Net()
    _trainer(callbacks=[StaceyReplay(config={"p": 2.5})]).fit(replayed, _loader())  # adopted by the callback
    assert isinstance(trainer.optimizers[0], Stacey) and isinstance(replayed, StaceyMixin)  # the doors were used
    for module in (adopted, replayed):
        assert _callables_on_the_instance(module) == [], type(module).__name__


def test_replay_gives_the_config_and_reseeds_before_training(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    seen = []

    class Record(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(torch.rand(1).item())

    for _ in range(2):
        torch.rand(5)  # whatever was drawn before fit, the training starts from the same state
        trainer = _trainer(callbacks=[StaceyReplay(config={"p": 2.5}), Record()])
        trainer.fit(Net(), _loader())
        assert trainer.optimizers[0].param_groups[0]["p"] == 2.5
    assert seen[0] == seen[1]
    assert os.environ["PL_GLOBAL_SEED"] == "3"


def test_replay_leaves_lightning_clis_injected_optimizer_alone():
    module = Net()
    module.configure_optimizers = lambda: torch.optim.SGD(module.parameters(), lr=0.1)  # as LightningCLI does
    trainer = _trainer(callbacks=[StaceyReplay(config={"p": 2.5})])
    trainer.fit(module, _loader())
    assert isinstance(trainer.optimizers[0], torch.optim.SGD) and not isinstance(module, StaceyMixin)


class _RecordOptimizer(pl.Callback):
    """Writes, in every process that trains, the class of its module and optimizer and the optimizer's p."""

    def __init__(self, folder) -> None:
        self.folder = folder

    def on_train_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        seen = f"{type(pl_module).__name__} {type(optimizer).__name__} {optimizer.param_groups[0].get('p')}"
        (self.folder / f"rank{trainer.global_rank}-pid{os.getpid()}").write_text(seen)


@pytest.mark.slow
def test_an_adopted_module_trains_under_ddp_spawn(tmp_path):
    """ddp_spawn pickles the module into each process: it arrives adopted, with its config."""
    module = adopt(Net())
    module.set_stacey_config({"p": 2.5})
    trainer = _trainer(strategy="ddp_spawn", devices=2, callbacks=[_RecordOptimizer(tmp_path)])
    trainer.fit(module, _loader())
    seen = {path.name.split("-")[0]: path.read_text() for path in tmp_path.iterdir()}
    assert seen == {"rank0": "Net Stacey 2.5", "rank1": "Net Stacey 2.5"}
    assert not any(path.name.endswith(f"pid{os.getpid()}") for path in tmp_path.iterdir())  # trained elsewhere
