"""Winners that hold: the top candidates are trained again on other seeds, and the best mean wins."""

import os
import socket

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from tuning_tasks import FAST, TINY

from stacey_lightning.attributes import (
    CONFIRMS,
    EPOCHS,
    FAIL_REASON,
    GRADIENT_SCALE,
    HOSTNAME,
    PID,
    RETRY_OF,
    SURPLUS,
    TRIAL_SEED,
)
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.study.admission import HELD_ELSEWHERE
from stacey_lightning.study.budget import epochs_spent
from stacey_lightning.study.confirm import (
    SEEDS_DO_NOT_MATTER,
    Plan,
    curves_settled,
    enqueue_run,
    is_duplicate,
    missing_run,
    open_candidates,
    plan,
    reproduced,
    reproduction_line,
    score,
    search_spec,
    settled,
    winner,
)
from stacey_lightning.study.open_study import open_study
from stacey_lightning.study.spec import study_spec
from stacey_lightning.tasks.digits import make_digits
from stacey_lightning.tuner import tune
from stacey_lightning.tuner.best_checkpoint import kept_trial
from stacey_lightning.tuner.workers import Worker


@pytest.mark.parametrize(
    "n_trials, expected", [(5, Plan(0, 0)), (6, Plan(2, 1)), (15, Plan(2, 1)), (24, Plan(2, 2)), (40, Plan(3, 2))]
)
def test_the_reserve_grows_with_the_study_and_comes_out_of_its_search(n_trials, expected):
    spec = study_spec("digits", n_trials=n_trials, max_epochs=2)
    assert plan(spec) == expected
    assert search_spec(spec).n_trials == n_trials - expected.runs
    assert plan(study_spec("digits", n_trials=n_trials, confirm=False)) == Plan(0, 0)
    with_budget = search_spec(study_spec("digits", budget=24 * 2, max_epochs=2))
    assert with_budget.budget == 48 - 4 * 2  # 24 full runs: 2 candidates on 2 seeds, 2 epochs each


def _add(study, value, state=TrialState.COMPLETE, curve=None, **attrs):
    """Add a trial; ``curve`` (its per-epoch values, ending at ``value``) as its intermediate values."""
    study.add_trial(
        create_trial(
            state=state,
            value=value if state == TrialState.COMPLETE else None,
            params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs=attrs,
            intermediate_values=dict(enumerate(curve or [])),
        )
    )


def test_a_lucky_seed_loses_to_the_candidate_with_the_better_mean():
    study = optuna.create_study(direction="maximize")
    _add(study, 0.99)  # 0: the best single run
    _add(study, 0.98)  # 1
    _add(study, 0.50)  # 2: never a candidate
    assert winner(study).trial.number == 0 and winner(study).text() == "0.99"  # before any confirmation
    _add(study, 0.90, **{CONFIRMS: 0, TRIAL_SEED: 1})
    _add(study, 0.97, **{CONFIRMS: 1, TRIAL_SEED: 1})
    chosen = winner(study)
    assert chosen.trial.number == 1 and chosen.values == (0.98, 0.97)
    assert chosen.text() == "0.975 ± 0.0071 over 2 seeds"
    _add(study, None, state=TrialState.FAIL, **{CONFIRMS: 1, TRIAL_SEED: 2})  # its worker died: re-queued,
    _add(study, 0.96, **{CONFIRMS: 1, TRIAL_SEED: 2, RETRY_OF: 5})  # and the retry is the result
    assert winner(study).values == (0.98, 0.97, 0.96) and winner(study).failed == 0
    _add(study, None, state=TrialState.FAIL, **{CONFIRMS: 1, TRIAL_SEED: 3})  # a diverged seed ranks it last
    assert winner(study).trial.number == 0


def test_each_planned_run_is_enqueued_once_and_one_two_workers_enqueued_runs_once():
    study = optuna.create_study(direction="maximize")
    for value in (0.5, 0.9, 0.8, 0.4):
        _add(study, value)
    spec = study_spec("digits", n_trials=6)  # 2 candidates (trials 1 and 2) on seed 1
    wanted = []
    while (run := missing_run(spec, study.get_trials(deepcopy=False))) is not None:
        wanted.append((run[0].number, run[1]))
        enqueue_run(study, *run)
    assert wanted == [(1, 1), (2, 1)]


def test_a_confirmation_run_two_workers_enqueued_runs_once():
    study = optuna.create_study()
    _add(study, 1.0, **{CONFIRMS: 0, TRIAL_SEED: 1})
    _add(study, 1.0, **{CONFIRMS: 0, TRIAL_SEED: 2})
    _add(study, 1.0, **{CONFIRMS: 0, TRIAL_SEED: 1})
    trials = study.get_trials(deepcopy=False)
    assert [is_duplicate(trials, t) for t in trials] == [False, False, True]


def test_the_spare_copy_of_a_run_two_workers_enqueued_is_not_left_waiting_when_the_study_fills(tmp_path):
    """Two workers that enqueue the last confirmation run at once each ask once. If the one whose copy is the
    lower-numbered read the queue before the other copy landed, and the other worker took its copy first, its
    ask finds nothing left and makes a new trial (failed as surplus): the study is full, and the other copy
    was left WAITING (tests/tuner/test_killed_trials.py, once under load). It is asked for and failed."""
    spec = study_spec("digits", n_trials=6, storage=f"sqlite:///{tmp_path}/optuna.db", output_dir=tmp_path)
    study = open_study(spec)
    for value in (0.5, 0.9, 0.8, 0.4):
        _add(study, value)  # the search: its candidates are trials 1 and 2
    _add(study, 0.9, **{CONFIRMS: 1, TRIAL_SEED: 1})  # the first confirmation run, finished
    last = missing_run(spec, study.get_trials(deepcopy=False))
    enqueue_run(study, *last)  # worker A's copy: trial 5
    enqueue_run(study, *last)  # worker B's, enqueued before it saw A's: trial 6
    taken = study.ask()  # B takes the lowest-numbered copy, A's, and trains it
    taken.set_user_attr(HOSTNAME, socket.gethostname())
    taken.set_user_attr(PID, os.getpid())
    _add(study, None, state=TrialState.FAIL, **{SURPLUS: True})  # A's ask: a new trial, failed as surplus
    assert Worker(spec, call=0)._next_trial() is None  # A, asking again: the study is full
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials if t.state == TrialState.WAITING] == []
    assert trials[6].state == TrialState.FAIL and trials[6].user_attrs[FAIL_REASON].startswith(HELD_ELSEWHERE)


def test_a_study_confirms_its_top_two_on_another_seed_within_its_trials(tmp_path, capsys):
    study = tune("digits", n_trials=6, pruner="none", output_dir=tmp_path, task_options=TINY, **FAST)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    confirmations = [t for t in trials if CONFIRMS in t.user_attrs]
    search = [t for t in trials if CONFIRMS not in t.user_attrs]
    by_tail = settled(trials)  # 2 epochs of a tiny model: settled or not, the same rule ranks
    top_two = sorted(search, key=lambda t: score(t, by_tail), reverse=True)[:2]
    assert sorted(t.user_attrs[CONFIRMS] for t in confirmations) == sorted(t.number for t in top_two)
    assert {t.user_attrs[TRIAL_SEED] for t in confirmations} == {1}  # the study's seed is 0
    for confirmation in confirmations:  # the candidate's config, trained on another seed
        candidate = trials[confirmation.user_attrs[CONFIRMS]]
        assert confirmation.user_attrs["stacey_config"] == candidate.user_attrs["stacey_config"]
    chosen = winner(study)
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert best["confirmation"]["values"] == pytest.approx(list(chosen.values)) and len(chosen.values) == 2
    assert StaceyConfig.from_source(tmp_path / "best.yaml").to_dict() == chosen.trial.user_attrs["stacey_config"]
    out = capsys.readouterr().out
    assert f"winner: trial {chosen.trial.number}, val_acc {chosen.text()} (confirmed on other seeds" in out
    assert (chosen.ranking() in out) and (f"val_acc = {chosen.text(6)}" in (tmp_path / "best.yaml").read_text())
    for confirmation in confirmations:
        assert f"(#{confirmation.number} COMPLETE, confirms #{confirmation.user_attrs[CONFIRMS]} on seed 1" in out


# Curves of 12 epochs, whose last quarter (3 epochs) a settled metric's score averages: a plateau whose
# epochs move a few images up and down (digits' val_acc), the last three's moves no larger than the others'.
def _plateau(*tail):
    return [0.90, 0.95, 0.97, 0.975, 0.985, 0.974, 0.986, 0.975, 0.984] + list(tail)


def test_a_settled_metric_ranks_by_the_last_epochs_and_reports_the_finals():
    study = optuna.create_study(direction="maximize")
    _add(study, 0.986, curve=_plateau(0.976, 0.978, 0.986))  # 0: a lucky last epoch
    _add(study, 0.980, curve=_plateau(0.986, 0.984, 0.980))  # 1: higher before it, an unlucky last
    _add(study, 0.970, curve=_plateau(0.966, 0.972, 0.970))  # 2
    assert settled(study.get_trials())
    spec = study_spec("digits", n_trials=6)  # 2 candidates on seed 1
    assert missing_run(spec, study.get_trials(deepcopy=False))[0].number == 1  # the first candidate
    chosen = winner(study)  # before any confirmation: trial 1 (0.9833 over its last 3 epochs, trial 0 0.98)
    assert (
        chosen.trial.number == 1
        and chosen.values == (0.980,)
        and chosen.scores == pytest.approx(((0.986 + 0.984 + 0.980) / 3,))
    )
    assert chosen.text() == "0.98"
    assert chosen.ranking() == "ranked by its last epochs' mean, 0.9833: the metric had settled"
    _add(study, 0.975, curve=_plateau(0.980, 0.982, 0.975), **{CONFIRMS: 1, TRIAL_SEED: 1})
    _add(study, 0.972, curve=_plateau(0.970, 0.968, 0.972), **{CONFIRMS: 0, TRIAL_SEED: 1})
    chosen = winner(study)  # by the finals' means trial 0 (0.979 against 0.9775), by the scores' trial 1
    assert (
        chosen.trial.number == 1
        and chosen.values == (0.980, 0.975)
        and chosen.score == pytest.approx(0.98117, abs=1e-5)
        and chosen.ahead_of == ()  # neither ended better on both seeds (trial 0 did on seed 0 only)
    )


# Curves of 12 epochs of a val_loss that has levelled off, as _plateau's.
def _loss_plateau(*tail):
    return [0.90, 0.70, 0.60, 0.55, 0.52, 0.49, 0.535, 0.50, 0.54] + list(tail)


def test_a_candidate_that_ends_worse_on_every_seed_never_wins_whatever_its_last_epochs_say():
    # Issue 24: on a held-out image task the tail means named the candidate that ended at val_loss 0.530 on
    # both seeds over the one that ended at 0.510 on both, and best.ckpt held the worse model.
    study = optuna.create_study(direction="minimize")
    _add(study, 0.530, curve=_loss_plateau(0.500, 0.505, 0.530))  # 0: lower before its last epoch
    _add(study, 0.510, curve=_loss_plateau(0.525, 0.520, 0.510))  # 1
    assert settled(study.get_trials())
    assert winner(study).trial.number == 0  # on one seed each the last epochs' means rank: 0.5117 < 0.5183
    _add(study, 0.530, curve=_loss_plateau(0.502, 0.500, 0.530), **{CONFIRMS: 0, TRIAL_SEED: 1})
    _add(study, 0.510, curve=_loss_plateau(0.522, 0.524, 0.510), **{CONFIRMS: 1, TRIAL_SEED: 1})
    chosen = winner(study)  # the scores still favour trial 0 (0.5112 against 0.5185)
    assert chosen.trial.number == 1 and chosen.values == (0.510, 0.510) and chosen.ahead_of == (0,)
    assert chosen.ranking() == (
        "ranked by its last epochs' mean, 0.5185: the metric had settled; "
        "ahead of trial #0, which ended worse on every seed"
    )


@pytest.mark.parametrize("other_seed_final, expected", [(0.530, 0), (0.505, 1)])
def test_candidates_run_on_different_seeds_compare_every_final_with_every_final(other_seed_final, expected):
    # Trial 1 was confirmed on seed 11 (the study resumed with --seed 10): the two share one seed, too few
    # to compare seed by seed, so trial 0 must have ended better than each of trial 1's runs.
    study = optuna.create_study(direction="minimize")
    _add(study, 0.510, curve=_loss_plateau(0.525, 0.520, 0.510))  # 0
    _add(study, 0.520, curve=_loss_plateau(0.500, 0.505, 0.520))  # 1: the better last epochs
    _add(study, 0.515, curve=_loss_plateau(0.522, 0.524, 0.515), **{CONFIRMS: 0, TRIAL_SEED: 1})
    _add(study, other_seed_final, curve=_loss_plateau(0.502, 0.500, other_seed_final), **{CONFIRMS: 1, TRIAL_SEED: 11})
    assert winner(study).trial.number == expected  # 0.505 beats trial 0's 0.510: the last epochs decide


def test_a_metric_still_improving_ranks_by_its_final_value():
    study = optuna.create_study(direction="minimize")
    _add(study, 2.80, curve=[4.0, 3.6, 3.3, 3.1, 2.95, 2.88, 2.84, 2.80])  # 0: ends lowest, still falling
    _add(study, 2.82, curve=[3.5, 3.1, 2.95, 2.9, 2.86, 2.84, 2.83, 2.82])  # 1: got low early
    trials = study.get_trials()
    assert not settled(trials)
    chosen = winner(study)
    assert chosen.trial.number == 0 and chosen.scores == (2.80,) and chosen.ranking() == ""


def test_tails_that_move_apart_are_not_noise_and_the_final_value_ranks():
    # textlm-long's 8-run study (seed 0): the Muon-like anchor overfits (lowest at epoch 6, then up), the Lion-like
    # and the centre still fall. Their last changes spread widely, which read as noise when the changes of all
    # curves were pooled, and the tail means named the Muon-like run (2.385 against 2.373): it had ended worst.
    study = optuna.create_study(direction="minimize")
    _add(study, 2.406, curve=[3.01, 2.56, 2.389, 2.322, 2.329, 2.321, 2.363, 2.406])
    _add(study, 2.356, curve=[3.521, 3.208, 2.9, 2.67, 2.531, 2.469, 2.39, 2.356])
    _add(study, 2.406, curve=[3.481, 3.165, 2.886, 2.668, 2.562, 2.497, 2.433, 2.406])
    assert not settled(study.get_trials())
    assert winner(study).trial.number == 1 and winner(study).ranking() == ""


def test_curves_that_fall_through_their_last_half_are_trending_whatever_their_bends():
    # textlm, 5 epochs, seed 1 of benchmarks/settled.py's runs: three of four curves fall at every epoch of their
    # last half; the fourth's rise at the end reads as noise large enough to hide the others' different slopes.
    curves = [[3.491, 3.22, 2.96, 2.781, 2.815], [3.838, 3.549, 3.377, 3.307, 3.204],
              [3.295, 2.947, 2.748, 2.579, 2.5], [3.316, 2.955, 2.68, 2.542, 2.529]]  # fmt: skip
    assert not curves_settled(curves)
    # The same tails over a plateau that moves both ways before them: settled.
    assert curves_settled([[3.0, 2.9, 2.95, 2.88, 2.93] + curve[-2:] for curve in curves])


def test_too_few_epochs_to_average_rank_by_the_final_value():
    study = optuna.create_study(direction="maximize")
    _add(study, 0.99, curve=[0.99])
    _add(study, 0.98)  # no intermediate values at all (a user's objective that reports none)
    assert not settled(study.get_trials())
    assert winner(study).trial.number == 0


def test_a_confirmation_run_that_reproduces_its_trial_ends_the_confirmations():
    study = optuna.create_study(direction="maximize")
    spec = study_spec("digits", n_trials=6, budget=72, max_epochs=12)  # 2 candidates on seed 1: 4 searched
    curves = [_plateau(0.976, 0.978, 0.986), _plateau(0.986, 0.984, 0.980), _plateau(0.970, 0.978, 0.990)]
    for number, curve in enumerate(curves):
        _add(study, curve[-1], curve=curve, **{GRADIENT_SCALE: 0.01 * (number + 1), EPOCHS: 12})
    _add(study, 0.95, curve=[0.95] * 12, **{EPOCHS: 12})
    trials = study.get_trials(deepcopy=False)
    assert settled(trials) and reproduced(trials) is None and search_spec(spec, trials).n_trials == 4
    assert missing_run(spec, trials)[0].number == 1  # the candidates by their last epochs: 1 and 0
    assert open_candidates(spec, trials) == {0, 1, 2}  # and trial 2's model: it ends best
    _add(study, 0.980, curve=curves[1], **{GRADIENT_SCALE: 0.02, EPOCHS: 12, CONFIRMS: 1, TRIAL_SEED: 1})
    trials = study.get_trials(deepcopy=False)
    assert reproduced(trials).number == 4
    assert reproduction_line(trials, 4).startswith("trial #4 reproduced trial #1 exactly on seed 1: seeds do not")
    assert reproduction_line(trials, 3) is None
    # The other run goes back to the search: it may train a 5th trial, with the epochs of the 6th run.
    search = search_spec(spec, trials)
    assert (search.n_trials, search.budget) == (5, 72 - 12)
    assert missing_run(spec, trials) is None and open_candidates(spec, trials) == set()
    chosen = winner(study)  # each run's final is its config's on any seed: the finals rank, not the tails
    assert chosen.trial.number == 2 and chosen.values == (0.990,) and chosen.reproduced and not chosen.confirmed
    assert chosen.ranking() == f"{SEEDS_DO_NOT_MATTER}: a confirmation run reproduced its trial exactly"
    # A run that another worker had started and that differs says that seeds matter after all.
    _add(study, 0.981, curve=curves[0][:-1] + [0.981], **{GRADIENT_SCALE: 0.01, EPOCHS: 12, CONFIRMS: 0, TRIAL_SEED: 1})
    trials = study.get_trials(deepcopy=False)
    assert reproduced(trials) is None and search_spec(spec, trials).n_trials == 4
    assert not winner(study).reproduced and winner(study).confirmed


def test_the_same_curve_with_another_gradient_scale_is_not_a_reproduction():
    # Accuracy on a small set can repeat on another seed by chance; the momentum's scale at the end does not.
    study = optuna.create_study(direction="maximize")
    _add(study, 0.98, curve=[0.97, 0.98], **{GRADIENT_SCALE: 0.012})
    _add(study, 0.98, curve=[0.97, 0.98], **{GRADIENT_SCALE: 0.013, CONFIRMS: 0, TRIAL_SEED: 1})
    assert reproduced(study.get_trials(deepcopy=False)) is None


def make_self_seeded(trial=None):
    """Digits that seeds itself (it takes no seed, as many tasks do): every run of a config trains the same."""
    return make_digits(trial, **TINY)


def make_seeded(trial=None, seed=0):
    return make_digits(trial, seed=seed, **TINY)


@pytest.mark.parametrize("make, reproduces", [(make_self_seeded, True), (make_seeded, False)])
def test_a_task_that_ignores_its_seed_is_confirmed_once_and_searched_more(tmp_path, capsys, make, reproduces):
    budget = 12  # 6 runs of 2 epochs: 4 search trials, then 2 candidates on seed 1
    study = tune(make, budget=budget, pruner="none", output_dir=tmp_path, **FAST)
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if not t.user_attrs.get(SURPLUS)]
    assert all(t.state == TrialState.COMPLETE for t in trained) and epochs_spent(trials) == budget
    confirmations = [t for t in trained if CONFIRMS in t.user_attrs]
    chosen, out = winner(study), capsys.readouterr().out
    assert len(trained) == 6 and len(confirmations) == (1 if reproduces else 2)  # the rest searched
    assert kept_trial(tmp_path, study.study_name) == chosen.trial.number  # best.ckpt holds the winner's model
    assert chosen.reproduced == reproduces and chosen.confirmed != reproduces
    if reproduces:
        run = confirmations[0]
        assert run.intermediate_values == trials[run.user_attrs[CONFIRMS]].intermediate_values
        assert f"trial #{run.number} reproduced trial #{run.user_attrs[CONFIRMS]} exactly on seed 1" in out
        assert f"winner: trial {chosen.trial.number}, val_loss {chosen.text()} ({SEEDS_DO_NOT_MATTER}" in out
        assert SEEDS_DO_NOT_MATTER in (tmp_path / "best.yaml").read_text()
    else:
        assert SEEDS_DO_NOT_MATTER not in out
        assert f"winner: trial {chosen.trial.number}, val_loss {chosen.text()} (confirmed on other seeds" in out
