"""The winner's ladder: after the anchors, the best rung's neighbours, up first, until both are known."""

import math

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from tuning_tasks import FAST, TINY

from search_spaces import preset_path
from stacey_lightning.search.anchors import baseline_ladders, stacey_ladders
from stacey_lightning.search.baseline_space import BaselineSpace
from stacey_lightning.search.ladder import next_rung
from stacey_lightning.search.space import SearchSpace
from stacey_lightning.tuner.tuning import tune

DEFAULT = SearchSpace.load("default")  # steps from 1e-4 to 1e-2, the spectral norm on matrices
LADDERS = stacey_ladders(DEFAULT)


def rung(ladder, step, value=None, state=TrialState.COMPLETE, rest=1.0, embedding=1.0, coupling=0.0, **attrs):
    user_attrs = {"anchor": f"{ladder} step {step:.1g}", "ladder": ladder, "ladder_step": step, "ladder_rest": rest,
                  "ladder_embedding": embedding, "ladder_coupling": coupling}  # fmt: skip
    return trial(value, state, {**user_attrs, **attrs})


def trial(value=None, state=TrialState.COMPLETE, user_attrs=None):
    value = value if state == TrialState.COMPLETE else None
    distributions = {"x": FloatDistribution(0, 1)}
    return create_trial(state=state, value=value, params={"x": 0.5}, distributions=distributions,
                        user_attrs=user_attrs or {})  # fmt: skip


def climb(trials, minimize=True, space=DEFAULT, ladders=LADDERS):
    found = next_rung(trials, ladders, space, minimize)
    return None if found is None else (found.ladder, pytest.approx(found.step), found.name)


FIRST_ROUND = [rung("lion-like", 1e-3, 3.2), rung("muon-like", 1e-3, 2.8), rung("centre", 1e-3, 3.3),
               rung("sgd-like", 3e-4, state=TrialState.PRUNED)]  # fmt: skip


# The step lost both ways from the Muon-like winner, the rest at 3x won, and the step lost both ways there too.
REST_WON_STEP_LOST = FIRST_ROUND + [
    rung("muon-like", 3e-3, 2.9),
    rung("muon-like", 1e-3 / 3, 3.0),
    rung("muon-like", 1e-3, 2.5, rest=3.0),
    rung("muon-like", 3e-3, 2.6, rest=3.0),
    rung("muon-like", 1e-3 / 3, 2.7, rest=3.0),
]

# The Lion-like step lost both ways; then, at a horizon of one run, it won and the step lost both ways again.
LION_STEP_DONE = [rung("lion-like", 1e-3, 2.0), rung("lion-like", 3e-3, 2.9), rung("lion-like", 1e-3 / 3, 3.0)]
LION_COUPLED_STEP_DONE = LION_STEP_DONE + [
    rung("lion-like", 1e-3, 1.9, coupling=1.0),
    rung("lion-like", 3e-3, 2.5, coupling=1.0),
    rung("lion-like", 1e-3 / 3, 2.5, coupling=1.0),
]


@pytest.mark.parametrize(
    "trials, expected",
    [
        # The winner's step up first.
        (FIRST_ROUND, ("muon-like", 3e-3, "muon-like step 0.003")),
        # Going up paid: up again (on a ladder with one coordinate).
        ([rung("lion-like", 1e-3, 2.8), rung("lion-like", 3e-3, 2.6)], ("lion-like", 9e-3, "lion-like step 0.009")),
        # On the Muon-like ladder the other coordinate first, the rest of the model's step; then the step again.
        (FIRST_ROUND + [rung("muon-like", 3e-3, 2.6)], ("muon-like", 3e-3, "muon-like step 0.003, rest x3")),
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.7, rest=3.0)],
            ("muon-like", 9e-3, "muon-like step 0.009"),
        ),
        # Up was worse: one down.
        (FIRST_ROUND + [rung("muon-like", 3e-3, 2.9)], ("muon-like", 1e-3 / 3, "muon-like step 0.0003")),
        # Pruned or failed counts as worse.
        (FIRST_ROUND + [rung("muon-like", 3e-3, state=TrialState.PRUNED)], ("muon-like", 1e-3 / 3, None)),
        (FIRST_ROUND + [rung("muon-like", 3e-3, state=TrialState.FAIL)], ("muon-like", 1e-3 / 3, None)),
        # Both neighbours worse: the step's line search is done; the rest of the model's step, three times.
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.9), rung("muon-like", 1e-3 / 3, 3.0)],
            ("muon-like", 1e-3, "muon-like step 0.001, rest x3"),
        ),
        # Lion-like has no coordinate of the rest: every kind steps alike there. Its step's line done, the
        # coupling's: from tau = 0 to a horizon of one run.
        (
            LION_STEP_DONE,
            ("lion-like", 1e-3, "lion-like step 0.001, tau_horizon 1"),
        ),
        # The coupling lost: the ladder is done.
        (
            LION_STEP_DONE + [rung("lion-like", 1e-3, state=TrialState.PRUNED, coupling=1.0)],
            None,
        ),
        # It won: the step's line again, at that coupling (another point), then three times the coupling.
        (
            LION_STEP_DONE + [rung("lion-like", 1e-3, 1.9, coupling=1.0)],
            ("lion-like", 3e-3, "lion-like step 0.003, tau_horizon 1"),
        ),
        (
            LION_COUPLED_STEP_DONE,
            ("lion-like", 1e-3, "lion-like step 0.001, tau_horizon 0.33"),
        ),
        # Three times more lost too, and three times less is the uncoupled rung, tried: done.
        (
            LION_COUPLED_STEP_DONE + [rung("lion-like", 1e-3, 2.2, coupling=3.0)],
            None,
        ),
        # Three times more won, and its steps lost there: nine times is beyond the space's shortest horizon (0.3, a
        # rate of 3.3 a run) and a third of it, one a run, was tried: done.
        (
            LION_COUPLED_STEP_DONE
            + [
                rung("lion-like", 1e-3, 1.8, coupling=3.0),
                rung("lion-like", 3e-3, 2.5, coupling=3.0),
                rung("lion-like", 1e-3 / 3, 2.5, coupling=3.0),
            ],
            None,
        ),
        # The space's top step (1e-2) is too close above 9e-3 to be a rung of its own, and the rest cannot step
        # three times 9e-3 in it: the steps' lines are done, the coupling's is next.
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 9e-3, 2.5)],
            ("muon-like", 9e-3, "muon-like step 0.009, tau_horizon 1"),
        ),
        # The centre's middle horizon couples it already: it has no coupling's line.
        ([rung("centre", 1e-3, 2.0), rung("centre", 3e-3, 2.9), rung("centre", 1e-3 / 3, 3.0)], None),
        # A move along the rest: the step next, at that rest (the rest at 3e-3 * 3 = 9e-3 is in the space's range).
        (
            FIRST_ROUND
            + [rung("muon-like", 3e-3, 2.9), rung("muon-like", 1e-3 / 3, 3.0), rung("muon-like", 1e-3, 2.5, rest=3.0)],
            ("muon-like", 3e-3, "muon-like step 0.003, rest x3"),
        ),
        # The step lost both ways there: the rest up again; then a third of it is outside the range (the
        # matrices would step more than the rest) and 27 times too, so a worse x9 ends it.
        (REST_WON_STEP_LOST, ("muon-like", 1e-3, "muon-like step 0.001, rest x9")),
        (
            REST_WON_STEP_LOST + [rung("muon-like", 1e-3, 2.55, rest=9.0)],
            ("muon-like", 1e-3, "muon-like step 0.001, rest x3, tau_horizon 1"),
        ),
        # A rung still running: the winner is not known.
        (FIRST_ROUND + [rung("muon-like", 3e-3, state=TrialState.RUNNING)], None),
        # The best is the sampler's, not a rung: no ladder to climb.
        (FIRST_ROUND + [trial(2.0)], None),
        # A surplus trial (failed before training) is no rung tried.
        (FIRST_ROUND + [rung("muon-like", 3e-3, state=TrialState.FAIL, surplus=True)], ("muon-like", 3e-3, None)),
        # A diverged winner (inf) is no winner.
        ([rung("lion-like", 1e-3, math.inf), rung("centre", 1e-3, 3.0)], ("centre", 3e-3, "centre step 0.003")),
        # Nothing finished yet.
        ([rung("lion-like", 1e-3, state=TrialState.PRUNED)], None),
    ],
)
def test_the_best_rungs_neighbours_up_first_then_down(trials, expected):
    found = climb(trials)
    if expected is not None and expected[2] is None:
        found = found and found[:2]
        expected = expected[:2]
    assert found == expected


# The embeddings' step from 1 to 10 times the rest's; the anchors at the default middle step (1e-3), from
# which the trials below climb.
LANGUAGE = SearchSpace.load({**yaml.safe_load(preset_path("language").read_text()), "anchor_step": 1e-3})


@pytest.mark.parametrize(
    "trials, expected",
    [
        # From the middle: the step first, as without embeddings.
        (FIRST_ROUND, "muon-like step 0.003"),
        # The step moved: the coordinates not moved yet first, the rest's, then the embeddings'.
        (FIRST_ROUND + [rung("muon-like", 3e-3, 2.6)], "muon-like step 0.003, rest x3"),
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.7, rest=3.0)],
            "muon-like step 0.003, embeddings x3",
        ),
        # The step and the rest moved: the embeddings' next, before the step's and the rest's neighbours.
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.5, rest=3.0)],
            "muon-like step 0.003, rest x3, embeddings x3",
        ),
        # The embeddings' x3 won: every coordinate has moved, so the step's neighbours (up is out of the range),
        # the rest's (x9 is too), then the embeddings' x9 (a third of 1 is below the range).
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.5, rest=3.0),
                           rung("muon-like", 3e-3, 2.4, rest=3.0, embedding=3.0)],
            "muon-like step 0.001, rest x3, embeddings x3",
        ),
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.5, rest=3.0),
                           rung("muon-like", 3e-3, 2.4, rest=3.0, embedding=3.0),
                           rung("muon-like", 1e-3, 2.45, rest=3.0, embedding=3.0)],
            "muon-like step 0.003, embeddings x3",
        ),
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.5, rest=3.0),
                           rung("muon-like", 3e-3, 2.4, rest=3.0, embedding=3.0),
                           rung("muon-like", 1e-3, 2.45, rest=3.0, embedding=3.0),
                           rung("muon-like", 3e-3, 2.5, embedding=3.0)],
            "muon-like step 0.003, rest x3, embeddings x9",
        ),
        # 27 times is beyond the range's 10; every step's neighbour lost: the coupling's line.
        (
            FIRST_ROUND + [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.5, rest=3.0),
                           rung("muon-like", 3e-3, 2.4, rest=3.0, embedding=3.0),
                           rung("muon-like", 1e-3, 2.45, rest=3.0, embedding=3.0),
                           rung("muon-like", 3e-3, 2.5, embedding=3.0),
                           rung("muon-like", 3e-3, 2.42, rest=3.0, embedding=9.0)],
            "muon-like step 0.003, rest x3, embeddings x3, tau_horizon 1",
        ),
    ],
)  # fmt: skip
def test_the_embeddings_step_is_a_coordinate_where_the_space_lets_them_step_apart(trials, expected):
    found = next_rung(trials, stacey_ladders(LANGUAGE), LANGUAGE, minimize=True)
    assert (found and found.name) == expected
    if found is not None:  # the rung's config: the embeddings at its multiple of the rest's step, the rest alike
        config = LANGUAGE.sample_config(optuna.trial.FixedTrial(LANGUAGE.params_for(found.values)))
        alike = LANGUAGE.sample_config(optuna.trial.FixedTrial(LANGUAGE.params_for(stacey_ladders(LANGUAGE)[0].rung(
            found.step, found.rest).values)))  # fmt: skip
        assert config["lr"] == pytest.approx(found.step * found.rest / 0.2)  # Adam's rest: its RMS is the step
        ratio = config["kinds"]["embedding"]["lr_scale"] / alike["kinds"]["embedding"]["lr_scale"]
        assert ratio == pytest.approx(found.embedding)
    # The default space has no embeddings' step to move: its ladder never proposes one.
    assert not stacey_ladders(DEFAULT)[0].embedding


def test_a_model_without_embeddings_gets_no_embeddings_rung():
    """Its trials record the kinds it has (tuner/trial.py): an embeddings' rung would train the same model again."""
    moved = [rung("muon-like", 3e-3, 2.6), rung("muon-like", 3e-3, 2.7, rest=3.0)]
    without = [rung("muon-like", 1e-3, 2.8, model_kinds=["matrix", "vector"]), *FIRST_ROUND[:1], *FIRST_ROUND[2:]]
    found = next_rung(without + moved, stacey_ladders(LANGUAGE), LANGUAGE, minimize=True)
    assert found.name == "muon-like step 0.009"  # the step's next rung, not the embeddings'
    with_them = [rung("muon-like", 1e-3, 2.8, model_kinds=["embedding", "matrix"]), *FIRST_ROUND[:1], *FIRST_ROUND[2:]]
    found = next_rung(with_them + moved, stacey_ladders(LANGUAGE), LANGUAGE, minimize=True)
    assert found.name == "muon-like step 0.003, embeddings x3"


def test_a_coupled_rung_pulls_towards_z_at_its_horizon_and_keeps_the_rest_of_its_config():
    """tau_horizon 1 / coupling, tau from it and the run's steps; alpha the geometry's (the space's least)."""
    uncoupled = DEFAULT.sample_config(optuna.trial.FixedTrial(DEFAULT.params_for(LADDERS[0].rung(3e-3).values)))
    assert float(uncoupled["tau_horizon"]) == math.inf  # tau = 0: Muon
    for coupling in (1.0, 3.0):
        found = LADDERS[0].rung(3e-3, coupling=coupling)
        config = DEFAULT.sample_config(optuna.trial.FixedTrial(DEFAULT.params_for(found.values)))
        assert config["tau_horizon"] == pytest.approx(1 / coupling)
        assert {k: v for k, v in config.items() if k != "tau_horizon"} == {
            k: v for k, v in uncoupled.items() if k != "tau_horizon"
        }


def test_a_space_without_a_horizon_has_no_coupling_line():
    steps = {"p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"},
             "lr": {"distribution": "coordinate_step", "low": 1e-4, "high": 1e-2}}  # fmt: skip
    for tau in (0.0, {"distribution": "log_uniform", "low": 1e-4, "high": 1e-1}):  # fixed; sampled for itself
        space = SearchSpace.load({**steps, "tau": tau})
        assert climb(LION_STEP_DONE, space=space, ladders=stacey_ladders(space)) is None
    for horizon in (1.0, ".inf"):  # a fixed horizon
        space = SearchSpace.load({**steps, "tau_horizon": horizon})
        assert climb(LION_STEP_DONE, space=space, ladders=stacey_ladders(space)) is None
    # A horizon of two runs at least: one run's pull is outside the space, so there is no rung to try.
    space = SearchSpace.load({**steps, "tau_horizon": {"distribution": "horizon", "low": 2.0, "high": ".inf"}})
    assert climb(LION_STEP_DONE, space=space, ladders=stacey_ladders(space)) is None


def test_a_study_from_before_the_coupling_line_reads_its_rungs_as_uncoupled():
    """Rungs recorded without ``ladder_coupling`` are at tau = 0: the line starts from them, and a coupled rung
    that lost ends it."""
    old = [trial(t.value, user_attrs={k: v for k, v in t.user_attrs.items() if k != "ladder_coupling"})
           for t in LION_STEP_DONE]  # fmt: skip
    assert climb(old) == ("lion-like", pytest.approx(1e-3), "lion-like step 0.001, tau_horizon 1")
    assert climb(old + [rung("lion-like", 1e-3, 2.5, coupling=1.0)]) is None


def test_the_rung_at_the_top_of_the_range_is_clipped_into_it():
    trials = [rung("muon-like", 1e-3, 2.8), rung("muon-like", 3e-3, 2.6), rung("muon-like", 6e-3, 2.5)]
    assert climb(trials)[:2] == ("muon-like", pytest.approx(1e-2))  # 1.8e-2 clipped to the space's 1e-2


def test_a_rung_with_the_rest_at_three_times_keeps_the_matrices_step():
    found = next_rung(
        FIRST_ROUND + [rung("muon-like", 3e-3, 2.9), rung("muon-like", 1e-3 / 3, 3.0)], LADDERS, DEFAULT, True
    )
    config = DEFAULT.sample_config(optuna.trial.FixedTrial(DEFAULT.params_for(found.values)))
    # The rest in Adam's norm at an update RMS of 3e-3: AdamW at lr 1.5e-2, Muon's lr times three.
    assert config["norm"] == "adam" and config["lr"] == pytest.approx(3e-3 / 0.2)
    assert config["kinds"]["matrix"]["norm"] == "spectral"
    assert 0.2 * config["lr"] * config["kinds"]["matrix"]["lr_scale"] == pytest.approx(1e-3)  # RMS: the step
    assert config["betas"] == pytest.approx([0.9, 0.95])  # Muon's momentum still


def test_direction_picks_the_winner():
    trials = [rung("lion-like", 1e-3, 0.9), rung("centre", 1e-3, 0.95)]
    assert climb(trials, minimize=False)[0] == "centre"
    assert climb(trials, minimize=True)[0] == "lion-like"


def test_a_space_that_samples_lr_itself_leaves_the_sgd_like_point_where_it_is():
    plain = SearchSpace.load({"p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"},
                              "lr": {"distribution": "log_uniform", "low": 1e-4, "high": 1.0}})  # fmt: skip
    ladders = stacey_ladders(plain)
    sgd_wins = [rung("sgd-like", 3e-4, 1.0), rung("lion-like", 1e-3, 2.0)]
    assert climb(sgd_wins, space=plain, ladders=ladders) is None  # its lr is the space's middle at every rung
    lion_wins = [rung("sgd-like", 3e-4, 3.0), rung("lion-like", 1e-3, 2.0)]
    assert climb(lion_wins, space=plain, ladders=ladders)[:2] == ("lion-like", pytest.approx(3e-3))
    fixed = SearchSpace.load({"p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"}, "lr": 1e-3})
    assert climb(lion_wins, space=fixed, ladders=stacey_ladders(fixed)) is None  # no range of steps


def test_a_baseline_climbs_its_lr_from_its_default():
    adamw = BaselineSpace.load("adamw")
    ladders = baseline_ladders(adamw)
    trials = [rung("defaults", 1e-3, 2.0)]
    found = next_rung(trials, ladders, adamw, minimize=True)
    assert found.name == "defaults lr 0.003" and adamw.params_for(found.values)["lr"] == pytest.approx(3e-3)


def test_a_study_climbs_the_winners_ladder_after_its_anchors(tmp_path):
    space = {"p": {"distribution": "p_exponent", "low": 2.0, "high": ".inf"},
             "lr": {"distribution": "coordinate_step", "low": 1e-4, "high": 1e-2}}  # fmt: skip
    study = tune("digits", space=space, n_trials=5, output_dir=tmp_path, task_options=TINY, pruner="none", **FAST)
    anchors = [t.user_attrs.get("anchor") for t in study.trials]
    assert anchors[:3] == ["lion-like step 0.001", "centre step 0.001", "sgd-like step 0.0003"]
    sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1  # digits: val_acc, maximized
    first = min(study.trials[:3], key=lambda t: sign * t.value)
    ladder, step = first.user_attrs["ladder"], first.user_attrs["ladder_step"]
    assert study.trials[3].user_attrs["ladder"] == ladder
    assert study.trials[3].user_attrs["ladder_step"] == pytest.approx(step * 3)  # up first
    fourth_won = sign * study.trials[3].value < sign * first.value
    fifth = study.trials[4].user_attrs
    assert fifth["ladder"] == ladder
    assert fifth["ladder_step"] == pytest.approx(step * 9 if fourth_won else step / 3)
    # Each trial records the kinds its model has, which the ladder reads (the digits MLP: no embeddings).
    assert study.trials[0].user_attrs["model_kinds"] == ["matrix", "vector"]
