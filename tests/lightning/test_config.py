import math

import pytest
import yaml

from stacey_lightning.lightning.config import StaceyConfig, read_number


def test_defaults_round_trip_through_yaml(tmp_path):
    config = StaceyConfig(
        p=math.inf,
        kinds={"matrix": {"p": 3.0, "lr_scale": 0.5}},
        schedule={"name": "warmup_cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.1},
    )
    data = config.to_dict()
    assert data["p"] == "inf" and data["betas"] == [0.9, 0.99]
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(data))
    assert StaceyConfig.from_source(path) == config
    assert StaceyConfig.from_source(str(path)) == config
    assert StaceyConfig.from_source(data) == config
    assert StaceyConfig.from_source(config) == config


def test_the_global_norm_round_trips_and_a_kind_may_leave_it(tmp_path):
    config = StaceyConfig(norm="adam", beta_v=0.99, kinds={"matrix": {"norm": "spectral"}, "conv": {"norm": "lp"}})
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    assert StaceyConfig.from_source(path) == config
    assert StaceyConfig.from_source({}).norm == "lp"  # a best.yaml written before the key existed


def test_yaml_numbers_inf_and_partial_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    # YAML 1.1 reads 1e-3 (no dot) as a string; .inf as a float.
    path.write_text("lr: 1e-3\np: .inf\nkinds:\n  vector: {p: inf}\n")
    config = StaceyConfig.from_source(path)
    assert config.lr == 1e-3 and config.p == math.inf and config.kinds == {"vector": {"p": math.inf}}
    assert config.alpha == StaceyConfig().alpha
    assert StaceyConfig.from_source({"tau": 0.5}, defaults=StaceyConfig(lr=0.2)).lr == 0.2


@pytest.mark.parametrize(
    "content, key",
    [
        ("lr: 0.01\nlearning_rate: 0.1\n", "learning_rate"),
        ("p: 1.0\n", "p"),
        ("p: two\n", "p"),
        ("tau: 2\n", "tau"),
        ("betas: [0.9]\n", "betas"),
        ("betas: [0.9, 1.5]\n", "beta parameter at index 1"),
        ("variant: pq\n", "variant"),
        ("variant: pp\np: .inf\n", "p"),
        ("weight_decay: true\n", "weight_decay"),
        ("kinds: {bias: {p: 2}}\n", "bias"),
        ("kinds: {matrix: {q: 2}}\n", "kinds.matrix: unknown key 'q'"),
        ("kinds: {matrix: {p: 0.5}}\n", "kinds.matrix: Invalid p"),
        ("kinds: {matrix: {lr_scale: -1}}\n", "kinds.matrix.lr_scale"),
        ("schedule: {name: linear}\n", "schedule.name"),
        ("schedule: {name: constant, warmup_steps: 3}\n", "schedule"),
        ("schedule: {name: warmup_cosine, warmup_fraction: 2}\n", "schedule.warmup_fraction"),
        ("schedule: {name: warmup_cosine, warmup_steps: 1, warmup_fraction: 0.1}\n", "not both"),
        ("schedule: {name: warmup_cosine, warmup_steps: 1.5}\n", "schedule.warmup_steps"),
        ("schedule: {name: torch.optim.lr_scheduler.NoSuch}\n", "NoSuch"),
        ("schedule: {name: torch.optim.lr_scheduler.StepLR, gamma: 0.5}\n", "StepLR"),
        ("- 1\n- 2\n", "mapping"),
        ("norm: spectral\n", "norm: 'spectral' needs matrices"),
        ("norm: l1\n", "norm: 'l1' is not a norm"),
        ("norm: adam\nvariant: pp\np: 4\n", "variant: 'pp' with norm='adam'"),
        ("beta_v: 1.0\n", "beta_v"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path, content, key):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ValueError) as error:
        StaceyConfig.from_source(path)
    assert key in str(error.value) and "bad.yaml" in str(error.value)


def test_errors_for_mappings_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'momentum'"):
        StaceyConfig.from_source({"momentum": 0.9})
    with pytest.raises(ValueError, match="missing.yaml"):
        StaceyConfig.from_source(tmp_path / "missing.yaml")


def test_scheduler_class_path_with_options_is_accepted():
    config = StaceyConfig.from_source({"schedule": {"name": "torch.optim.lr_scheduler.StepLR", "step_size": 10}})
    assert config.schedule == {"name": "torch.optim.lr_scheduler.StepLR", "step_size": 10}


@pytest.mark.parametrize(
    "mapping, words",
    [
        ({"tau_horizon": 0.0}, "tau_horizon: 0.0 must be > 0"),
        ({"tau_horizon": "soon"}, "tau_horizon: expected a number"),
        ({"average_horizon": 0.0}, "average_horizon: 0.0 must be > 0 and finite, or null"),
        ({"average_horizon": ".inf"}, "average_horizon: '.inf' must be > 0 and finite"),
        ({"average_horizon": "last"}, "average_horizon: expected a number"),
        ({"tau_follows_lr": "yes"}, "Invalid tau_follows_lr: 'yes'"),
    ],
)
def test_new_keys_are_checked_with_clear_errors(mapping, words):
    with pytest.raises(ValueError, match=words):
        StaceyConfig.from_source(mapping)


def test_new_keys_round_trip_and_old_files_still_load(tmp_path):
    config = StaceyConfig.from_source({"tau_horizon": ".inf", "tau_follows_lr": True})
    assert config.tau_horizon == math.inf and StaceyConfig.from_source(config.to_dict()) == config
    assert config.optimizer_arguments()["tau"] == 0.0
    old = tmp_path / "best.yaml"  # a best.yaml written before these keys existed
    old.write_text("lr: 0.01\np: inf\nalpha: 0.1\ntau: 0.02\nbetas: [0.9, 0.99]\nweight_decay: 0.0\neps: 1.0e-8\n"
                   "variant: p2\nkinds: {}\nschedule: {name: constant}\n")  # fmt: skip
    loaded = StaceyConfig.from_source(old)
    assert (loaded.tau, loaded.tau_horizon, loaded.tau_follows_lr) == (0.02, None, False)
    assert loaded.average_horizon is None and "average_decay" not in loaded.optimizer_arguments()


def test_the_average_horizon_is_a_decay_for_the_run_and_needs_its_steps():
    config = StaceyConfig.from_source({"average_horizon": 0.1})
    assert StaceyConfig.from_source(config.to_dict()) == config
    assert config.optimizer_arguments(200)["average_decay"] == pytest.approx(1 - 1 / 20)
    assert config.optimizer_arguments(5)["average_decay"] == 0.0  # a horizon under one step: the iterate itself
    with pytest.raises(ValueError, match="average_horizon needs the run's number of optimizer steps"):
        config.optimizer_arguments()


@pytest.mark.parametrize(
    "value, number",
    [(2, 2.0), ("1e-3", 1e-3), ("inf", math.inf), (".inf", math.inf), (".Inf", math.inf), ("+.inf", math.inf),
     ("-.inf", -math.inf), (math.inf, math.inf)],
)  # fmt: skip
def test_read_number_reads_yaml_and_our_own_spellings_of_inf(value, number):
    assert read_number(value, "p") == number


@pytest.mark.parametrize("value", [True, "nan", float("nan"), "four", None, [4]])
def test_read_number_refuses_what_is_not_a_number(value):
    with pytest.raises(ValueError, match="p: expected a number"):
        read_number(value, "p")
