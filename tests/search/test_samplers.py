"""Samplers and pruners by name, by class path or as objects; bad ones named before any trial."""

import optuna
import pytest

from stacey_lightning.search.samplers import check_choice, make_pruner, make_sampler, startup_trials


@pytest.mark.parametrize(
    "name, cls",
    [("tpe", optuna.samplers.TPESampler), ("gp", optuna.samplers.GPSampler), ("cmaes", optuna.samplers.CmaEsSampler),
     ("random", optuna.samplers.RandomSampler), ("qmc", optuna.samplers.QMCSampler), (None, optuna.samplers.TPESampler),
     ("optuna.samplers.NSGAIISampler", optuna.samplers.NSGAIISampler)],
)  # fmt: skip
def test_samplers_by_name_and_class_path(name, cls):
    check_choice(name, "sampler")
    assert isinstance(make_sampler(name, seed=3, n_trials=12), cls)


def test_tpe_models_after_a_quarter_of_the_budget():
    assert [startup_trials(n) for n in (4, 12, 24, 48, 400)] == [2, 3, 6, 10, 10]
    assert make_sampler("tpe", seed=0, n_trials=12)._n_startup_trials == 3


@pytest.mark.parametrize(
    "name, cls",
    [("hyperband", optuna.pruners.HyperbandPruner), ("median", optuna.pruners.MedianPruner),
     ("none", optuna.pruners.NopPruner), (None, optuna.pruners.HyperbandPruner),
     ("optuna.pruners.SuccessiveHalvingPruner", optuna.pruners.SuccessiveHalvingPruner)],
)  # fmt: skip
def test_pruners_by_name_and_class_path(name, cls):
    check_choice(name, "pruner")
    assert isinstance(make_pruner(name, max_epochs=10, n_trials=12), cls)


def test_objects_are_used_as_they_are():
    sampler, pruner = optuna.samplers.RandomSampler(), optuna.pruners.NopPruner()
    assert make_sampler(sampler, 0, 1) is sampler and make_pruner(pruner, 1, 1) is pruner


@pytest.mark.parametrize(
    "choice, what, words",
    [("tpee", "sampler", "neither one of tpe"), ("optuna.samplers.Nope", "sampler", "sampler:"),
     ("optuna.pruners.MedianPruner", "sampler", "BaseSampler subclass"), ("nope.module.X", "pruner", "cannot import"),
     (3, "pruner", "expected a name")],
)  # fmt: skip
def test_bad_choices_say_what_is_allowed(choice, what, words):
    with pytest.raises(ValueError, match=words):
        check_choice(choice, what)
