"""Budgets in epochs: what a trial costs, when a study stops, and that a resumed study counts what is done."""

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from tuning_tasks import FAST, TINY

from stacey_lightning.attributes import EPOCHS, SURPLUS
from stacey_lightning.cli import tune_main
from stacey_lightning.study.budget import budget_is_spent, epochs_spent, over_budget, trial_epochs
from stacey_lightning.study.spec import study_spec
from stacey_lightning.tuner import tune


def _trial(number, state, epochs=None, reports=0, surplus=False):
    attrs = {**({EPOCHS: epochs} if epochs is not None else {}), **({SURPLUS: True} if surplus else {})}
    trial = create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        params={"x": 0.1},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs=attrs,
        intermediate_values={step: 0.5 for step in range(reports)},
    )
    trial.number = number
    return trial


def test_a_trial_costs_what_it_trained_and_a_running_one_what_it_may_still_cost():
    pruned = _trial(0, TrialState.PRUNED, epochs=1)
    killed = _trial(1, TrialState.FAIL, reports=2)  # no EPOCHS: killed mid-way; what it reported
    surplus = _trial(2, TrialState.FAIL, surplus=True)
    running = _trial(3, TrialState.RUNNING)
    waiting = _trial(4, TrialState.WAITING)  # e.g. an anchor: Optuna hands it to the next worker that asks
    assert [trial_epochs(t, 4) for t in (pruned, killed, running, waiting)] == [1, 2, 4, 4]
    trials = [pruned, killed, surplus, running, waiting]
    assert epochs_spent(trials) == 3  # the running trial has not spent anything yet
    assert not budget_is_spent(trials, budget=11, max_epochs=4)  # 1 + 2 + 4 running + 4 = 11
    assert budget_is_spent(trials, budget=10, max_epochs=4)
    assert not budget_is_spent(trials, budget=None, max_epochs=4)
    assert not over_budget(trials, 4, budget=11, max_epochs=4) and over_budget(trials, 4, budget=10, max_epochs=4)
    # A trial after the waiting one is held to it too: the waiting one took its place first.
    assert over_budget(trials, 5, budget=11, max_epochs=4) and not over_budget(trials, 5, budget=15, max_epochs=4)


def test_a_study_stops_when_another_run_no_longer_fits_and_resumes_with_a_larger_budget(tmp_path, capsys):
    budget = 5  # max_epochs 2: at most two full trials, more if Hyperband prunes some after one epoch
    study = tune("digits", budget=budget, output_dir=tmp_path, task_options=TINY, **FAST)
    trials = study.get_trials(deepcopy=False)
    spent = epochs_spent(trials)
    assert budget - FAST["max_epochs"] < spent <= budget
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert sum(t.user_attrs[EPOCHS] for t in trials) == spent
    assert all(t.user_attrs[EPOCHS] == FAST["max_epochs"] for t in trials if t.state == TrialState.COMPLETE)
    out = capsys.readouterr().out
    assert f"{spent} of {budget} epochs" in out and f"{spent} epochs trained" in out

    study = tune("digits", budget=budget + 4, output_dir=tmp_path, task_options=TINY, **FAST)
    again = study.get_trials(deepcopy=False)
    assert len(again) > len(trials) and budget + 4 - FAST["max_epochs"] < epochs_spent(again) <= budget + 4


def test_a_budget_smaller_than_one_run_fails_in_one_line_before_any_trial(tmp_path, capsys):
    with pytest.raises(ValueError, match="budget: 3 epochs do not pay for one run of max_epochs 4"):
        study_spec("digits", budget=3, max_epochs=4)
    assert tune_main(["--task", "digits", "--budget", "1", "--max-epochs", "2", "--output", str(tmp_path)]) == 2
    assert "budget: 1 epochs" in capsys.readouterr().err
    assert not (tmp_path / "optuna.db").exists()


def test_without_n_trials_the_budget_sizes_the_sampler_and_anchors():
    spec = study_spec("digits", budget=40, max_epochs=10)
    assert spec.n_trials == 40 and spec.planned_trials == 4
    assert study_spec("digits", max_epochs=10).n_trials == 20
    assert study_spec("digits", budget=40, n_trials=2, max_epochs=10).planned_trials == 2
