import math

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import Stacey, StaceyConfig, StaceyMixin
from stacey_lightning.schedule import WarmupCosine
from stacey_lightning.tasks.digits import make_digits

TRAINER_OPTIONS = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                       enable_model_summary=False, accelerator="cpu")


class Regression(StaceyMixin, pl.LightningModule):
    def __init__(self, lr: float | None = None, p: float | None = None, foreach: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.net(inputs), targets)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(32, 4, generator=generator)
        return DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True)), batch_size=8)


def _optimizer(module):
    return module.stacey_optimizer_config()["optimizer"]


def test_precedence_set_config_over_hparams_over_defaults(tmp_path):
    module = Regression()
    assert module.stacey_config() == StaceyConfig()
    module = Regression(lr=0.5, p=3.0)
    assert (module.stacey_config().lr, module.stacey_config().p) == (0.5, 3.0)
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump({"p": "inf", "tau": 0.2}))
    module.set_stacey_config(path)
    config = module.stacey_config()
    assert (config.lr, config.p, config.tau) == (0.5, math.inf, 0.2)  # lr still from hparams
    module.set_stacey_config(StaceyConfig(lr=0.1))  # a whole StaceyConfig replaces everything
    assert (module.stacey_config().lr, module.stacey_config().p) == (0.1, 4.0)
    optimizer = _optimizer(module)
    assert isinstance(optimizer, Stacey) and optimizer.defaults["foreach"] is True  # option from hparams
    assert [group["kind"] for group in optimizer.param_groups] == ["matrix", "vector"]


def test_bad_config_fails_before_training(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("p: 4\nalpha: -1\n")
    with pytest.raises(ValueError, match=r"trial\.yaml.*alpha"):
        Regression().set_stacey_config(path)
    with pytest.raises(ValueError, match="unknown key 'momentum'"):
        Regression().set_stacey_config({"momentum": 0.9})
    module = Regression(p=0.5)
    with pytest.raises(ValueError, match="Invalid p.*Regression's saved hyperparameters"):
        pl.Trainer(max_epochs=1, **TRAINER_OPTIONS).fit(module)
    assert module.global_step == 0


def test_user_configure_optimizers_and_custom_groups():
    class OneGroup(Regression):
        def stacey_param_groups(self, config):
            return [{"params": list(self.parameters()), "kind": "all"}]

        def configure_optimizers(self):
            return self.stacey_optimizer_config({"lr": 0.2})

    result = OneGroup().configure_optimizers()
    assert [group["kind"] for group in result["optimizer"].param_groups] == ["all"]
    assert result["optimizer"].param_groups[0]["lr"] == 0.2 and "lr_scheduler" not in result

    class Incomplete(Regression):
        def stacey_param_groups(self, config):
            return [{"params": [self.net[0].weight]}]

    with pytest.raises(ValueError, match="'net.0.bias' is in 0 param groups"):
        Incomplete().stacey_optimizer_config()
    module = Regression()
    module.set_stacey_config({"schedule": {"name": "warmup_cosine"}})
    with pytest.raises(ValueError, match="Trainer"):
        module.stacey_optimizer_config()


def test_warmup_cosine_factor():
    factor = WarmupCosine(warmup_steps=3, total_steps=13, min_lr_ratio=0.1)
    assert [factor(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(8) == pytest.approx(0.55) and factor(13) == pytest.approx(0.1) and factor(20) == pytest.approx(0.1)


@pytest.mark.parametrize("schedule, expected_factor", [
    ({"name": "warmup_cosine", "warmup_steps": 2, "min_lr_ratio": 0.2}, WarmupCosine(2, 8, 0.2)(7)),
    ({"name": "torch.optim.lr_scheduler.StepLR", "step_size": 3, "gamma": 0.5}, 0.25),
])
def test_schedule_steps_per_optimizer_step_and_scales_both_steps(schedule, expected_factor):
    module = Regression(lr=0.1)
    module.set_stacey_config({"alpha": 0.3, "schedule": schedule})
    steps = []

    class Record(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            group = optimizer.param_groups[0]
            steps.append((group["lr"], optimizer._dual_step(group)))

    # 4 batches per epoch, 2 epochs: 8 optimizer steps; recorded are the step sizes used by steps 0..7.
    pl.Trainer(max_epochs=2, callbacks=[Record()], **TRAINER_OPTIONS).fit(module)
    lr, dual = steps[-1]
    assert len(steps) == 8
    assert lr == pytest.approx(0.1 * expected_factor) and dual == pytest.approx(0.3 * expected_factor)


class StopAfter(pl.Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def _digits_trainer(max_epochs, callbacks=()):
    return pl.Trainer(max_epochs=max_epochs, deterministic=True, callbacks=list(callbacks), **TRAINER_OPTIONS)


def _digits(config):
    module, data = make_digits(hidden=32, batch_size=64, foreach=True)
    module.set_stacey_config(config)
    return module, data


def test_exact_resume_matches_uninterrupted_run(tmp_path):
    config = {"p": 3.0, "lr": 0.03, "weight_decay": 0.01,
              "schedule": {"name": "warmup_cosine", "warmup_fraction": 0.1, "min_lr_ratio": 0.1}}
    k = 2
    pl.seed_everything(0)
    module, data = _digits(config)
    _digits_trainer(2 * k).fit(module, data)

    pl.seed_everything(0)
    first, data = _digits(config)
    trainer = _digits_trainer(2 * k, [StopAfter(k)])
    trainer.fit(first, data)
    assert trainer.current_epoch == k
    trainer.save_checkpoint(tmp_path / "half.ckpt")

    pl.seed_everything(0)
    resumed, data = make_digits(hidden=32, batch_size=64, foreach=True)  # the config comes from the checkpoint
    trainer = _digits_trainer(2 * k)
    trainer.fit(resumed, data, ckpt_path=tmp_path / "half.ckpt")
    assert trainer.global_step == 2 * k * 23
    assert resumed.stacey_config() == StaceyConfig.from_source(config, defaults=StaceyConfig(lr=0.03))
    for (name, expected), actual in zip(module.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
    assert not torch.equal(first.net[0].weight, resumed.net[0].weight)  # the second half did train
