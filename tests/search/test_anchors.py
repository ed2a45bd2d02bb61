"""Anchor points: enqueued once per study, run first, clipped into the space, named in the outputs."""

import math

import optuna
import pytest
import yaml
from tuning_tasks import FAST, TINY

from search_spaces import preset_path
from stacey_lightning.search.anchors import anchors_for
from stacey_lightning.search.baseline_space import BaselineSpace
from stacey_lightning.search.space import SearchSpace
from stacey_lightning.tuner.tuning import tune

SPACE = {
    "p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"},
    "lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1.0},
    "alpha": {"distribution": "log_uniform", "low": 0.1, "high": 10.0, "times": "lr"},
    "tau_horizon": {"distribution": "horizon", "low": 0.3, "high": ".inf"},
}


def test_lion_like_and_sgd_like_anchors_are_those_optimizers_in_the_space():
    space = SearchSpace.load(SPACE)
    anchors = {anchor.name: space.params_for(anchor.values) for anchor in anchors_for("stacey", space)}
    lion = anchors["lion-like step 0.001"]
    assert (lion["r"], lion["tau_rate"], lion["lr"]) == (0.0, 0.0, 1e-3)  # p = inf, tau = 0: Lion
    config = space.sample_config(optuna.trial.FixedTrial(lion))
    assert config["p"] == "inf" and config["tau_horizon"] == "inf"
    sgd = anchors["sgd-like step 0.0003"]
    assert (sgd["r"], sgd["tau_rate"]) == (1.0, 0.0)  # p = 2, tau = 0; its lr (this space's) in the middle
    narrow = SearchSpace.load({**SPACE, "p": {"distribution": "p_exponent", "low": 2.0, "high": 8.0}})
    clipped = narrow.params_for(anchors_for("stacey", narrow)[0].values)
    assert clipped["r"] == 1 / 7  # the most sign-like p the space allows
    adamw = BaselineSpace.load("adamw")
    # A baseline starts from its default lr (AdamW's 3e-3), whose ladder it climbs then (test_ladder.py).
    assert [adamw.params_for(a.values)["lr"] for a in anchors_for("adamw", adamw)] == pytest.approx([3e-3])


def test_anchors_run_first_once_per_study_and_not_again_on_resume(tmp_path, capsys):
    study = tune("digits", space=SPACE, n_trials=2, output_dir=tmp_path, task_options=TINY, **FAST)
    anchors = [t.user_attrs.get("anchor") for t in study.trials]
    assert anchors == ["lion-like step 0.001", "centre step 0.001"]  # as many as the budget reaches: each geometry
    assert study.user_attrs["anchors_enqueued"] == 2 and all(t.state.is_finished() for t in study.trials)
    out = capsys.readouterr().out
    assert "(#0 COMPLETE, anchor lion-like step 0.001" in out and "| trial | anchor | p |" in out
    study = tune("digits", space=SPACE, n_trials=3, output_dir=tmp_path, task_options=TINY, **FAST)
    assert [t.user_attrs.get("anchor") for t in study.trials] == [*anchors, "sgd-like step 0.0003"]  # the next one
    assert study.trials[2].state.is_finished() and study.user_attrs["anchors_enqueued"] == 3
    study = tune("digits", space=SPACE, n_trials=3, output_dir=tmp_path, task_options=TINY, **FAST)
    assert len(study.trials) == 3  # a resume with nothing left to do enqueues nothing
    assert math.isinf(float(study.trials[0].user_attrs["stacey_config"]["p"]))


def test_a_space_that_can_choose_the_spectral_norm_starts_from_muon_too():
    space = SearchSpace.load("default")
    anchors = anchors_for("stacey", space)
    # Muon-like first: the geometry most often best on the development half, against which the others are pruned;
    # Muon's matrices with a sign-like rest last, where it moves the Lion-like anchor's bracket least.
    assert [a.name for a in anchors[:3]] == ["muon-like step 0.001", "lion-like step 0.001", "centre step 0.001"]
    assert [a.name for a in anchors[3:]] == ["sgd-like step 0.0003", "muon-lion-like step 0.001"]
    config = space.sample_config(optuna.trial.FixedTrial(space.params_for(anchors[0].values)))
    # Muon: its geometry on matrices and convolutions, tau = 0, AdamW (Adam's norm) elsewhere at the same lr, the
    # lr whose update RMS is the step.
    assert config["kinds"]["matrix"]["norm"] == config["kinds"]["conv"]["norm"] == "spectral"
    assert config["tau_horizon"] == "inf" and config["norm"] == "adam"
    assert config["kinds"]["matrix"]["lr_scale"] * config["lr"] == config["lr"] == pytest.approx(1e-3 / 0.2)
    muon_lion = space.sample_config(optuna.trial.FixedTrial(space.params_for(anchors[4].values)))
    assert (muon_lion["norm"], muon_lion["p"], muon_lion["lr"]) == ("lp", "inf", pytest.approx(1e-3))
    assert muon_lion["kinds"]["matrix"]["lr_scale"] * muon_lion["lr"] == pytest.approx(1e-3 / 0.2)
    # Muon's momentum (beta2 = mu = 0.95; beta1 = mu^2 clipped to the preset's fixed 0.9), Lion's for Lion-like.
    assert config["betas"] == pytest.approx([0.9, 0.95])
    lion = space.sample_config(optuna.trial.FixedTrial(space.params_for(anchors[1].values)))
    assert lion["betas"] == pytest.approx([0.9, 0.99])
    # A space without a norm to choose has no Muon-like anchor (it would repeat the Lion-like one).
    assert not any("muon" in a.name for a in anchors_for("stacey", SearchSpace.load(SPACE)))
    # One that can choose the spectral norm but not Adam's starts from Muon's matrices with the sign-like rest.
    no_adam = SearchSpace.load({**yaml.safe_load(preset_path("default").read_text()), "norm": "lp"})
    assert [a.name for a in anchors_for("stacey", no_adam)][:2] == ["muon-lion-like step 0.001", "lion-like step 0.001"]


def test_a_spaces_anchor_step_moves_every_anchor_and_the_language_preset_starts_at_3e_3():
    """The SGD-like anchor keeps its fraction of the others' step; the ladder's rungs are around the new middle."""
    language = SearchSpace.load("language")
    assert [a.name for a in anchors_for("stacey", language)] == [
        "muon-like step 0.003", "lion-like step 0.003", "centre step 0.003", "sgd-like step 0.0009",
        "muon-lion-like step 0.003",
    ]  # fmt: skip
    lion_anchor = anchors_for("stacey", language)[1]
    lion = language.sample_config(optuna.trial.FixedTrial(language.params_for(lion_anchor.values)))
    assert lion["lr"] == pytest.approx(3e-3)  # p = inf: the lr is the step
    spec = {**yaml.safe_load(preset_path("language").read_text()), "anchor_step": 1e-3}
    assert anchors_for("stacey", SearchSpace.load(spec))[0].name == "muon-like step 0.001"
    # Written as YAML reads 1e-3 without a dot: a string, read as every number of a space is.
    assert anchors_for("stacey", SearchSpace.load({**spec, "anchor_step": "1e-3"}))[0].name == "muon-like step 0.001"


def test_from_four_runs_up_two_places_are_kept_for_the_winners_ladder():
    from stacey_lightning.search.anchors import anchor_places, enqueue_anchors

    assert [anchor_places(n) for n in (1, 2, 3, 4, 5, 6, 8, 16)] == [1, 2, 3, 2, 3, 4, 6, 14]
    space = SearchSpace.load("default")
    anchors = anchors_for("stacey", space)
    study = optuna.create_study()
    assert enqueue_anchors(study, anchors, space, 4) == 2  # Muon-like and Lion-like; two rungs to climb
    assert [t.user_attrs["anchor"] for t in study.trials] == ["muon-like step 0.001", "lion-like step 0.001"]
    assert enqueue_anchors(study, anchors, space, 8) == 3  # resumed to 8 runs: the other three, five in all


def test_a_start_config_whose_matrices_step_apart_is_started_where_it_is():
    """config_anchor reads a kind's lr_scale back as its step_scale: a best.yaml of a rung whose rest steps three
    times its matrices' (search/ladder.py) trains again at the same lr and lr_scale."""
    from stacey_lightning.search.anchors import config_anchor, stacey_ladders
    from stacey_lightning.search.space import DEFAULT_GRADIENT_SCALE

    space = SearchSpace.load("default")
    muon = next(ladder for ladder in stacey_ladders(space) if ladder.name == "muon-like")
    best = space.sample_config(optuna.trial.FixedTrial(space.params_for(muon.rung(1e-3, rest=3.0).values)))
    assert best["kinds"]["matrix"]["lr_scale"] * best["lr"] * 0.2 == pytest.approx(1e-3)  # the matrices' RMS
    start = config_anchor(best, gradient_scale=DEFAULT_GRADIENT_SCALE)
    again = space.sample_config(optuna.trial.FixedTrial(space.params_for(start.values)))
    assert again["lr"] == pytest.approx(best["lr"]) and again["betas"] == pytest.approx(best["betas"])
    assert again["kinds"]["matrix"]["lr_scale"] == pytest.approx(best["kinds"]["matrix"]["lr_scale"])


@pytest.mark.parametrize(("runs", "anchors"), [(4, 2), (6, 4), (8, 5)])
def test_a_studys_anchors_count_its_whole_plan_within_its_searchs_places(runs, anchors):
    """A budget of 8 runs reserves 2 for confirmation (study/confirm.py): its search has 6 places, and all five
    anchors train (the epochs their pruned runs leave go to the ladder); at 6 runs the search's 4 places cap them."""
    from stacey_lightning.study.spec import study_spec
    from stacey_lightning.tuner.tuning import _enqueue_first_points

    spec = study_spec("digits", space="default", budget=runs * 2, max_epochs=2)
    study = optuna.create_study(direction="maximize")
    _enqueue_first_points(study, spec)
    assert len(study.trials) == anchors
