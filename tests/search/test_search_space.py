import math

import optuna
import pytest
import yaml

from search_spaces import PRESETS, preset_path
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.search.space import SearchSpace, SearchSpaceError


@pytest.mark.parametrize("name", PRESETS)
def test_presets_sample_valid_configs(name):
    space = SearchSpace.load(name)
    assert space.source == str(preset_path(name))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        config = space.suggest(trial)
        StaceyConfig.from_source(config)
        study.tell(trial, 0.0)
    assert "r" in trial.params and "p" not in trial.params


def test_p_is_sampled_through_r():
    space = SearchSpace.load({"p": {"distribution": "p_exponent", "low": 2.0, "high": math.inf}})
    assert space.distributions["p"].r_range() == (0.0, 1.0)
    assert space.suggest(optuna.trial.FixedTrial({"r": 0.0}))["p"] == math.inf
    assert space.suggest(optuna.trial.FixedTrial({"r": 1.0}))["p"] == 2.0
    assert space.suggest(optuna.trial.FixedTrial({"r": 0.5}))["p"] == 3.0
    extended = SearchSpace.load({"p": {"distribution": "p_exponent", "low": 1.5, "high": 5.0}})
    assert extended.distributions["p"].r_range() == (0.25, 2.0)
    assert extended.suggest(optuna.trial.FixedTrial({"r": 2.0}))["p"] == 1.5


def test_kinds_betas_and_fixed_values_reach_the_config():
    space = SearchSpace.load(
        {
            "lr": 0.01,
            "betas": [0.9, 0.99],
            "variant": {"distribution": "categorical", "choices": ["p2", "pp"]},
            "kinds": {"matrix": {"p": {"distribution": "p_exponent", "low": 2, "high": 8}, "weight_decay": 0.0}},
            "schedule": {"name": "constant"},
        }
    )
    config = space.suggest(optuna.trial.FixedTrial({"variant": "pp", "kinds.matrix.r": 0.5}))
    assert config == {
        "lr": 0.01,
        "betas": [0.9, 0.99],
        "variant": "pp",
        "kinds": {"matrix": {"p": 3.0, "weight_decay": 0.0}},
        "schedule": {"name": "constant"},
    }


@pytest.mark.parametrize(
    "spec, key, words",
    [
        ({"learning_rate": 0.1}, "learning_rate", "unknown key"),
        ({"lr": {"distribution": "uniform", "low": 0.1, "high": 0.01}}, "lr", "inverted"),
        ({"lr": {"distribution": "uniform", "low": 0.1, "high": 0.1}}, "lr", "empty"),
        ({"p": {"distribution": "p_exponent", "low": 1.0, "high": 4}}, "p", "p must be > 1"),
        ({"p": 0.5}, "p", "p must be > 1"),
        ({"alpha": {"distribution": "log_uniform", "low": 0.0, "high": 1.0}}, "alpha", "above 0"),
        ({"tau": {"distribution": "gaussian", "low": 0.0, "high": 1.0}}, "tau", "bad distribution"),
        ({"tau": {"distribution": "uniform", "low": 0.0, "high": 2.0}}, "tau", "outside"),
        ({"betas": {"beta1": 0.9}}, "betas", "missing beta2"),
        ({"kinds": {"bias": {"p": 2}}}, "kinds.bias", "unknown kind"),
        ({"variant": "pp", "p": {"distribution": "p_exponent", "low": 2, "high": ".inf"}}, "p", "pp variant"),
        ({"kinds": {"vector": {"norm": "spectral"}}}, "kinds.vector.norm", "vectors take norm 'lp' or 'adam'"),
        ({"norm": {"distribution": "categorical", "choices": ["lp", "spectral"]}}, "norm", "is a kind's norm"),
        ({"lr": 0.01, "anchor_step": 3e-3}, "anchor_step", "needs lr sampled as a coordinate step"),
        (
            {"lr": {"distribution": "coordinate_step", "low": 1e-4, "high": 1e-2}, "anchor_step": 0.1},
            "anchor_step",
            "within lr's range [0.0001, 0.01]: 0.1",
        ),
        (
            {"lr": {"distribution": "coordinate_step", "low": 1e-4, "high": 1e-2}, "anchor_step": "fast"},
            "anchor_step",
            "expected a number, got 'fast'",
        ),
        (
            {
                "variant": {"distribution": "categorical", "choices": ["p2", "pp"]},
                "p": 4.0,
                "norm": {"distribution": "categorical", "choices": ["lp", "adam"]},
            },
            "norm",
            "pp variant cannot use",
        ),
        (
            {"kinds": {"matrix": {"norm": {"distribution": "categorical", "choices": ["lp", "l1"]}}}},
            "kinds.matrix.norm",
            "not a norm",
        ),
    ],
)
def test_bad_spaces_name_file_and_key(tmp_path, spec, key, words):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SearchSpaceError) as error:
        SearchSpace.load(path)
    assert str(path) in str(error.value) and f": {key}:" in str(error.value) and words in str(error.value)


def test_unknown_preset_or_missing_file():
    with pytest.raises(SearchSpaceError, match="neither a preset"):
        SearchSpace.load("no-such-space.yaml")


def test_tau_horizon_and_alpha_per_lr_are_sampled_as_the_dynamics_want():
    """tau through the rate 1/tau_horizon (0 included: tau = 0), alpha as a multiple of the trial's lr."""
    space = SearchSpace.load({
        "lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1.0},
        "alpha": {"distribution": "log_uniform", "low": 0.1, "high": 30.0, "times": "lr"},
        "tau_horizon": {"distribution": "horizon", "low": 0.3, "high": ".inf"},
    })  # fmt: skip
    assert space.param_names() == {"lr", "alpha_per_lr", "tau_rate"}
    assert space.distributions["tau_horizon"].r_range() == (0.0, 1 / 0.3)
    config = space.sample_config(optuna.trial.FixedTrial({"lr": 0.02, "alpha_per_lr": 5.0, "tau_rate": 0.0}))
    assert config["alpha"] == pytest.approx(0.1) and config["tau_horizon"] == "inf"
    assert space.sample_config(optuna.trial.FixedTrial({"lr": 0.02, "alpha_per_lr": 5.0, "tau_rate": 2.0}))[
        "tau_horizon"
    ] == pytest.approx(0.5)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):  # every sample is a valid config
        StaceyConfig.from_source(space.suggest(study.ask()))


@pytest.mark.parametrize(
    "spec, key, words",
    [
        ({"tau_horizon": {"distribution": "horizon", "low": 0.0, "high": 10}}, "tau_horizon", "above 0"),
        ({"tau": {"distribution": "horizon", "low": 0.1, "high": 10}}, "tau", "horizon is only for tau_horizon"),
        ({"lr": {"distribution": "log_uniform", "low": 1e-3, "high": 1, "times": "alpha"}}, "lr", "unknown field"),
        ({"alpha": {"distribution": "log_uniform", "low": 0.1, "high": 1, "times": "p"}}, "alpha", "times: 'p'"),
        ({"tau_horizon": -1.0}, "tau_horizon", "must be > 0"),
        ({"tau_follows_lr": "maybe"}, "tau_follows_lr", "Invalid tau_follows_lr"),
        ({"kinds": {"matrix": {"step_scale": -1.0}}}, "kinds.matrix.step_scale", "must be > 0"),
        ({"kinds": {"matrix": {"step_scale": 0.5, "lr_scale": 2.0}}}, "kinds.matrix.step_scale", "not both"),
    ],
)
def test_the_new_keys_are_checked_naming_file_and_key(tmp_path, spec, key, words):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SearchSpaceError) as error:
        SearchSpace.load(path)
    assert str(path) in str(error.value) and f": {key}:" in str(error.value) and words in str(error.value)


def test_a_spectral_kind_steps_at_the_sampled_step_as_its_rms_and_the_head_keeps_the_global_lr():
    import torch

    from stacey_lightning import StaceyConfig
    from stacey_lightning.lightning.param_groups import param_groups

    space = SearchSpace.load("default")
    values = {"p": 4.0, "step": 2e-3, "kinds.matrix.step_scale": 1.0, "kinds.matrix.norm": "spectral"}
    config = StaceyConfig.from_source(space.suggest(optuna.trial.FixedTrial(space.params_for(values)), 1e-3))
    assert config.lr == pytest.approx(2e-3 / 1e-3 ** (1 / 3))  # the l_p step at p = 4
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    groups = {group["name"]: group for group in param_groups(model, config)}
    assert groups["matrix"]["norm"] == "spectral" and groups["matrix"]["lr"] == pytest.approx(2e-3 / 0.2)
    assert (groups["head"]["norm"], groups["head"]["p"], groups["head"]["lr"]) == ("lp", 4.0, config.lr)
    # step_scale: the matrices' step, times the trial's; the head and the rest keep the trial's.
    scaled = {**values, "kinds.matrix.step_scale": 0.25}
    config = StaceyConfig.from_source(space.suggest(optuna.trial.FixedTrial(space.params_for(scaled)), 1e-3))
    groups = {group["name"]: group for group in param_groups(model, config)}
    assert groups["matrix"]["lr"] == pytest.approx(0.25 * 2e-3 / 0.2) and groups["head"]["lr"] == config.lr


def test_in_adams_norm_every_kind_steps_at_the_sampled_step_as_its_rms_and_a_kind_in_lp_as_a_coordinate_step():
    """norm: adam makes lr AdamW's at the update RMS the step asks for (lr = step / 0.2), the head's included; a
    spectral kind then has the same lr (Muon at AdamW's lr), and a kind back in l_p makes the step a large
    coordinate makes."""
    import torch

    from stacey_lightning import StaceyConfig
    from stacey_lightning.lightning.param_groups import param_groups

    space = SearchSpace.load("default")
    values = {"p": 4.0, "step": 2e-3, "norm": "adam", "kinds.matrix.norm": "spectral", "kinds.conv.norm": "lp",
              "kinds.matrix.step_scale": 1.0, "kinds.conv.step_scale": 1.0}  # fmt: skip
    config = StaceyConfig.from_source(space.suggest(optuna.trial.FixedTrial(space.params_for(values)), 1e-3))
    assert config.norm == "adam" and config.lr == pytest.approx(2e-3 / 0.2)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 4, 3), torch.nn.Flatten(), torch.nn.Linear(8, 8),
                                torch.nn.Linear(8, 2))  # fmt: skip
    groups = {group["name"]: group for group in param_groups(model, config)}
    assert {name: group["norm"] for name, group in groups.items()} == {
        "head": "adam", "matrix": "spectral", "conv": "lp", "vector": "adam"
    }  # fmt: skip
    assert groups["matrix"]["lr"] == groups["head"]["lr"] == groups["vector"]["lr"] == pytest.approx(1e-2)
    assert groups["conv"]["lr"] == pytest.approx(2e-3 / 1e-3 ** (1 / 3))  # the l_p step at p = 4


def test_the_fingerprint_names_each_key_by_its_kind_and_set_fields_whatever_the_spelling(tmp_path):
    """What a study records (study.open_study): the same from a preset's name, its file and its mapping, the
    fields each distribution sets and no others, so that a field the code adds later changes no study's text."""
    fingerprint = SearchSpace.load("language").fingerprint()
    assert fingerprint["lr"] == '{"high": 0.01, "kind": "coordinate_step", "low": 0.0001}'
    assert fingerprint["p"] == '{"high": Infinity, "kind": "p_exponent", "low": 2.0}'
    assert fingerprint["kinds.matrix.norm"] == '{"choices": ["lp", "spectral"], "kind": "categorical"}'
    assert (fingerprint["anchor_step"], fingerprint["schedule"]) == ("0.003", '{"name": "constant"}')
    spec = yaml.safe_load(preset_path("language").read_text())
    assert SearchSpace.load(preset_path("language")).fingerprint() == fingerprint == SearchSpace(spec).fingerprint()
    assert SearchSpace.load("default").fingerprint() != fingerprint
