"""Schedules: the warmup-cosine factor, and every schedule stepping once per optimizer step and scaling
both of Stacey's step sizes (the optimizer's own scaling tests are in tests/optim/test_optimizer.py)."""

import math

import lightning.pytorch as pl
import pytest
from regression import TRAINER_OPTIONS, Regression

from stacey_lightning.lightning.schedule import WarmupCosine


def test_warmup_cosine_factor():
    factor = WarmupCosine(warmup_steps=3, total_steps=13, min_lr_ratio=0.1)
    assert [factor(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(8) == pytest.approx(0.55) and factor(13) == pytest.approx(0.1) and factor(20) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "schedule, expected_factor",
    [
        ({"name": "warmup_cosine", "warmup_steps": 2, "min_lr_ratio": 0.2}, WarmupCosine(2, 8, 0.2)(7)),
        ({"name": "torch.optim.lr_scheduler.StepLR", "step_size": 3, "gamma": 0.5}, 0.25),
    ],
)
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


@pytest.mark.parametrize("horizon, expected", [(0.5, 1 / (0.5 * 8)), (math.inf, 0.0), (0.01, 1.0)])
def test_tau_horizon_sets_tau_for_the_length_of_the_run(horizon, expected):
    module = Regression(lr=0.1)
    module.set_stacey_config({"tau_horizon": horizon, "tau": 0.3})  # tau_horizon, when set, decides tau
    taus = []

    class Record(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            taus.append(optimizer.param_groups[0]["tau"])

    pl.Trainer(max_epochs=2, callbacks=[Record()], **TRAINER_OPTIONS).fit(module)  # 8 optimizer steps
    assert taus == [pytest.approx(expected)] * 8


def test_tau_horizon_outside_fit_is_a_clear_error():
    module = Regression()
    module.set_stacey_config({"tau_horizon": 1.0})
    with pytest.raises(ValueError, match="tau_horizon needs the Trainer's step count"):
        module.stacey_optimizer_config()
