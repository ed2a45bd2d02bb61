"""Which trial may start (stacey_lightning/study/admission.py), from a table of studies: one pure function
decides, before a worker asks for a trial and once it holds one."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from stacey_lightning.attributes import ANCHOR, CONFIRMS, EPOCHS, HOSTNAME, SURPLUS, TRIAL_SEED
from stacey_lightning.study.admission import Circumstances, Verdict, admission
from stacey_lightning.study.spec import StudySpec

C, P, F, R, W = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING
HERE = "host-a"


def _spec(n_trials=4, budget=None, max_epochs=2, confirm=False, timeout=None) -> StudySpec:
    return StudySpec(
        task="digits", optimizer="stacey", space=None, n_trials=n_trials, max_epochs=max_epochs, budget=budget,
        storage="sqlite://", study_name="s", monitor="val_acc", direction="maximize", output_dir=Path("."),
        timeout=timeout, confirm=confirm,
    )  # fmt: skip


def _trial(number, state, value=None, *, epochs=None, host=HERE, enqueued=False, **attrs):
    """A frozen trial; ``attrs`` are user attributes by their short names (anchor, confirms, seed, surplus)."""
    names = {"anchor": ANCHOR, "confirms": CONFIRMS, "seed": TRIAL_SEED, "surplus": SURPLUS}
    user_attrs = {HOSTNAME: host, **{names[key]: value for key, value in attrs.items()}}
    if epochs is not None:
        user_attrs[EPOCHS] = epochs
    if state == C and value is None:
        value = 0.5 + number / 100  # later trials better: trial 3 is the best of four
    trial = optuna.trial.create_trial(
        state=state,
        value=value if state == C else None,
        params={"lr": 0.1},
        distributions={"lr": FloatDistribution(0.01, 1.0)},
        user_attrs=user_attrs,
        system_attrs={"fixed_params": {"lr": 0.1}} if enqueued else {},
    )
    trial.number = number
    return trial


def _search(count, state=C):
    return [_trial(n, state, epochs=2) for n in range(count)]


# (case, trials, spec, circumstances, verdict, words in the reason)
BEFORE_ASKING = [
    ("an empty study", [], _spec(), Circumstances(), Verdict.ADMIT, None),
    ("places left", _search(3), _spec(), Circumstances(), Verdict.ADMIT, None),
    ("failed trials hold no place", _search(3) + [_trial(3, F, epochs=1)], _spec(), Circumstances(), Verdict.ADMIT,
     None),
    ("full", _search(4), _spec(), Circumstances(), Verdict.DONE, "it has 4 trials"),
    ("full with a trial running", _search(3) + [_trial(3, R)], _spec(), Circumstances(), Verdict.DONE, "4 trials"),
    ("budget spent (a running trial counts at max_epochs)", _search(2) + [_trial(2, R)],
     _spec(n_trials=10, budget=7), Circumstances(), Verdict.DONE, "budget of 7 epochs"),
    ("budget left: a pruned trial costs what it trained", [_trial(0, C, epochs=2), _trial(1, P, epochs=1)],
     _spec(n_trials=10, budget=5), Circumstances(), Verdict.ADMIT, None),
    ("timeout passed", [], _spec(timeout=10.0), Circumstances(elapsed=11.0), Verdict.DONE, "timeout"),
    ("search over: confirm the best candidate first", _search(4), _spec(n_trials=6, confirm=True), Circumstances(),
     Verdict.CONFIRM, None),
    ("search over, its last trial runs here: wait", _search(3) + [_trial(3, R)], _spec(n_trials=6, confirm=True),
     Circumstances(host=HERE), Verdict.WAIT, "still run"),
    ("search over, its last trial runs elsewhere, no heartbeats: leave it to that worker",
     _search(3) + [_trial(3, R, host="host-b")], _spec(n_trials=6, confirm=True), Circumstances(host=HERE),
     Verdict.DONE, "run elsewhere"),
    ("search over, its last trial runs elsewhere, with heartbeats: wait",
     _search(3) + [_trial(3, R, host="host-b")], _spec(n_trials=6, confirm=True),
     Circumstances(host=HERE, heartbeats=True), Verdict.WAIT, None),
    ("every confirmation run held (a diverged one is a result)", _search(4) + [_trial(4, F, confirms=3, seed=1),
     _trial(5, R, confirms=2, seed=1)], _spec(n_trials=6, confirm=True), Circumstances(), Verdict.DONE, "all held"),
    ("a confirmation run waits to be taken", _search(4) + [_trial(4, R, confirms=3, seed=1),
     _trial(5, W, confirms=2, seed=1)], _spec(n_trials=6, confirm=True), Circumstances(), Verdict.ADMIT, None),
    ("full, with a spare copy of a run waiting: ask for it, so that it is failed", _search(4) + [
     _trial(4, C, confirms=3, seed=1), _trial(5, R, confirms=2, seed=1), _trial(6, W, confirms=2, seed=1),
     _trial(7, F, surplus=True)], _spec(n_trials=6, confirm=True), Circumstances(), Verdict.ADMIT, None),
    ("full, with an enqueued trial waiting for a place (a study that does not confirm)", _search(4) + [
     _trial(4, W, enqueued=True, anchor="lion")], _spec(), Circumstances(), Verdict.DONE, "it has 4 trials"),
]  # fmt: skip


@pytest.mark.parametrize("case, trials, spec, now, verdict, words", BEFORE_ASKING, ids=[c[0] for c in BEFORE_ASKING])
def test_before_asking_for_a_trial(case, trials, spec, now, verdict, words):
    decided = admission(trials, spec, now=now)
    assert decided.verdict == verdict, decided
    if words is not None:
        assert words in decided.reason


def test_the_confirmation_run_named_is_the_best_candidate_on_the_next_seed():
    decided = admission(_search(4), _spec(n_trials=6, confirm=True, timeout=None))
    candidate, seed = decided.run
    assert (candidate.number, seed) == (3, 1)
    held = _search(4) + [_trial(4, R, confirms=3, seed=1)]
    candidate, seed = admission(held, _spec(n_trials=6, confirm=True)).run
    assert (candidate.number, seed) == (2, 1)  # the second candidate, once the first is held


# (case, trials, spec, verdict, words, requeue): the verdict on the last trial, which the worker holds.
HOLDING = [
    ("a place left", _search(3) + [_trial(3, R)], _spec(), Verdict.ADMIT, None, False),
    ("a racing worker took the last place", _search(3) + [_trial(3, R), _trial(4, R)], _spec(), Verdict.SURPLUS,
     "already had 4 trials", False),
    ("an enqueued anchor that lost the race waits for the next place", _search(2) + [_trial(2, R), _trial(3, R),
     _trial(4, R, enqueued=True, anchor="lion")], _spec(n_trials=4), Verdict.SURPLUS, "already had", True),
    ("an enqueued trial after the search ended is not queued again", _search(4) + [_trial(4, R, enqueued=True)],
     _spec(n_trials=6, confirm=True), Verdict.SURPLUS, "already had 4 trials", False),
    ("the budget holds racing workers too", [_trial(0, C, epochs=2), _trial(1, R), _trial(2, R)],
     _spec(n_trials=10, budget=5), Verdict.SURPLUS, "budget of 5 epochs", False),
    ("an anchor another host already runs", [_trial(0, R, anchor="lion"), _trial(1, R, anchor="lion")], _spec(),
     Verdict.SURPLUS, "another worker holds this anchor point", False),
    ("an anchor whose first run failed runs again", [_trial(0, F, anchor="lion"), _trial(1, R, anchor="lion")],
     _spec(), Verdict.ADMIT, None, False),
    ("a confirmation run another worker holds", _search(4) + [_trial(4, R, confirms=3, seed=1),
     _trial(5, R, confirms=3, seed=1)], _spec(n_trials=6, confirm=True), Verdict.SURPLUS,
     "another worker holds this confirmation run", False),
    ("a confirmation run counts against the whole study, not the search's share", _search(4) +
     [_trial(4, R, confirms=3, seed=1)], _spec(n_trials=6, confirm=True), Verdict.ADMIT, None, False),
]  # fmt: skip


@pytest.mark.parametrize("case, trials, spec, verdict, words, requeue", HOLDING, ids=[c[0] for c in HOLDING])
def test_holding_a_trial(case, trials, spec, verdict, words, requeue):
    decided = admission(trials, spec, trials[-1].number)
    assert decided.verdict == verdict, decided
    assert decided.requeue == requeue
    if words is not None:
        assert words in decided.reason


def test_seeds_that_do_not_matter_stop_the_confirmation_runs_not_started():
    values = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.8}
    trials = [_trial(n, C, values[n], epochs=2) for n in range(4)]
    for trial in trials:
        trial.intermediate_values = {0: trial.value}
    rerun = _trial(4, C, 0.8, epochs=2, confirms=3, seed=1)
    rerun.intermediate_values = {0: 0.8}  # trial 3 exactly, on another seed
    held = trials + [rerun, _trial(5, R, confirms=2, seed=1)]
    decided = admission(held, _spec(n_trials=6, confirm=True), 5)
    assert decided.verdict == Verdict.SURPLUS and "seeds do not change" in decided.reason
