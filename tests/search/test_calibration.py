"""lr through the step a large coordinate makes: a study measures the gradient's scale after its first
Stacey trial and turns later trials' sampled steps into lr with it."""

import math

import optuna
import pytest
import torch
from tuning_tasks import FAST, TINY

from stacey_lightning import Stacey
from stacey_lightning.search.calibration import measure, study_gradient_scale
from stacey_lightning.search.space import DEFAULT_GRADIENT_SCALE, SearchSpace, coordinate_scale
from stacey_lightning.tuner.tuning import tune

SPACE = {
    "p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"},
    "lr": {"distribution": "coordinate_step", "low": 1e-4, "high": 1e-2},
    "weight_decay": {"distribution": "log_uniform", "low": 1e-6, "high": 1e-3, "times": "1/lr"},
    "kinds": {"embedding": {"p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"}}},
}


def test_a_coordinate_step_becomes_the_lr_of_each_geometry():
    space = SearchSpace.load(SPACE)
    assert space.param_names() == {"r", "step", "weight_decay_times_lr", "kinds.embedding.r"}
    params = {"r": 1 / 3, "step": 3e-3, "weight_decay_times_lr": 3e-5, "kinds.embedding.r": 0.0}
    config = space.sample_config(optuna.trial.FixedTrial(params), gradient_scale=1e-4)
    assert config["p"] == 4.0 and config["lr"] == pytest.approx(3e-3 / 1e-4 ** (1 / 3))  # 0.065
    assert config["weight_decay"] == pytest.approx(3e-5 / config["lr"])  # a decay of 3e-5 per step
    # The embeddings' own p = inf: their lr_scale makes their coordinates step like the others'.
    assert config["kinds"]["embedding"]["lr_scale"] * config["lr"] == pytest.approx(3e-3)
    assert coordinate_scale(1e-4, math.inf) == 1.0  # at p = inf, lr is the step: Lion's lr
    default = space.sample_config(optuna.trial.FixedTrial(params))
    assert default["lr"] == pytest.approx(3e-3 / DEFAULT_GRADIENT_SCALE ** (1 / 3))


def test_measure_reads_the_momentums_99th_percentile():
    param = torch.nn.Parameter(torch.zeros(1000))
    optimizer = Stacey([param], foreach=True)
    param.grad = torch.linspace(0.0, 1.0, 1000)  # m = (1 - beta2) * g after one step, one coordinate zero
    optimizer.step()
    expected = torch.quantile(optimizer.state[param]["m"][1:], 0.99).item()
    assert measure(optimizer) == pytest.approx(expected) and measure(Stacey([param])) is None
    optimizer.state[param]["m"].fill_(float("nan"))  # a diverged trial calibrates nothing
    assert measure(optimizer) is None


def test_a_study_calibrates_on_its_first_trial_and_later_trials_use_it(tmp_path):
    study = tune("digits", space=SPACE, n_trials=3, output_dir=tmp_path, task_options=TINY, anchors=False,
                 pruner="none", **FAST)  # fmt: skip
    first, *later = study.trials
    scale = first.user_attrs["gradient_scale"]
    assert study_gradient_scale(study) == scale and 1e-6 < scale < 1.0
    assert "gradient_scale" not in study.trials[0].params
    for trial in later:
        p = float(trial.user_attrs["stacey_config"]["p"])
        assert trial.user_attrs["stacey_config"]["lr"] == pytest.approx(
            trial.params["step"] / coordinate_scale(scale, p)
        )
