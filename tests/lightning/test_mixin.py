import math

import lightning.pytorch as pl
import pytest
import torch
import yaml
from modes import RecordModes
from regression import TRAINER_OPTIONS, Regression

from stacey_lightning import Stacey, StaceyConfig
from stacey_lightning.tasks.digits import make_digits


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


@pytest.mark.parametrize("average", [None, 0.1], ids=["iterate", "averaged"])
def test_exact_resume_matches_uninterrupted_run(tmp_path, average):
    config = {
        "p": 3.0,
        "lr": 0.03,
        "weight_decay": 0.01,
        "schedule": {"name": "warmup_cosine", "warmup_fraction": 0.1, "min_lr_ratio": 0.1},
        # Averaged: the checkpoint holds the average (saved in eval mode), the optimizer's state the iterate.
        "average_horizon": average,
    }
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


def test_an_averaging_config_is_validated_saved_and_left_at_its_average(tmp_path):
    module, data = _digits({"lr": 0.03, "average_horizon": 0.1})
    record = RecordModes()
    trainer = _digits_trainer(2, [record])
    trainer.fit(module, data)
    optimizer = trainer.optimizers[0]
    steps = trainer.global_step
    assert all(group["average_decay"] == pytest.approx(1 - 1 / (0.1 * steps)) for group in optimizer.param_groups)
    modes = record.seen
    assert modes["training"] and all(modes["training"]) and not any(modes["validation"])
    # The fit leaves the module at the average: the weights differ from the iterate the optimizer holds.
    averaged = {name: p.detach().clone() for name, p in module.named_parameters()}
    assert not torch.equal(module.net[0].weight, optimizer.state[module.net[0].weight]["average"])
    optimizer.train()
    trainer.save_checkpoint(tmp_path / "last.ckpt")  # outside validation: saved at the average all the same
    assert optimizer.param_groups[0]["train_mode"]
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    for name, value in averaged.items():
        assert torch.equal(saved["state_dict"][name], value), name
    trainer.save_checkpoint(tmp_path / "weights.ckpt", weights_only=True)  # and no optimizer state where none is asked
    saved = torch.load(tmp_path / "weights.ckpt", weights_only=False)
    assert "optimizer_states" not in saved
    assert all(torch.equal(saved["state_dict"][name], value) for name, value in averaged.items())


def test_an_averaging_run_saved_while_training_resumes_exactly(tmp_path):
    """Saved at an epoch's end (train mode, as ModelCheckpoint saves): the mixin takes the weights and the
    optimizer's state again at the average, as copies, since train() swaps the average back in place."""
    config = {"p": 3.0, "lr": 0.03, "average_horizon": 0.3}

    class SaveAtFirstEpochEnd(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                trainer.save_checkpoint(tmp_path / "epoch1.ckpt")

    pl.seed_everything(0)
    module, data = _digits(config)
    _digits_trainer(2, [SaveAtFirstEpochEnd()]).fit(module, data)
    pl.seed_everything(0)
    resumed, data = _digits(config)
    _digits_trainer(2).fit(resumed, data, ckpt_path=tmp_path / "epoch1.ckpt")
    for (name, expected), actual in zip(module.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(expected, actual), name
