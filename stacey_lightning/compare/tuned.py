"""Equal-budget tuning before a comparison: every optimizer gets the same number of trials, sampler,
pruner and epochs per trial, so that "is Stacey better for my model?" is answered honestly.

Stacey searches its space (the task's preset or ``space``); each baseline searches its options
(the ``baselines`` preset or ``baseline_space``). Every optimizer's study is kept, one per optimizer,
in one storage (``sqlite:///<output_dir>/studies.db`` by default): running the comparison again
resumes the studies instead of starting over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from optuna.trial import TrialState

from stacey_lightning.attributes import TASK_PARAMS
from stacey_lightning.baselines import STACEY
from stacey_lightning.compare.results import Tuned
from stacey_lightning.study.budget import epochs_spent
from stacey_lightning.study.confirm import winner
from stacey_lightning.study.spec import StudySpec, for_optimizer
from stacey_lightning.tuner.trial import trial_options

__all__ = ["tune_each"]


def tune_each(
    spec: StudySpec, optimizers: Sequence[str], *, space: Any = None, baseline_space: Any = None
) -> dict[str, Tuned]:
    """Tune every optimizer of ``optimizers`` with the same budget, sampler, pruner, seed and anchors: the
    study ``spec`` for each (Stacey on ``space``, a baseline on ``baseline_space``), named
    ``<task>-<optimizer>`` and written under ``spec.output_dir / optimizer``. Returns each one's result
    by name."""
    from stacey_lightning.tasks import resolve_task
    from stacey_lightning.tuner.tuning import NoTrialSucceeded, run_study

    name = resolve_task(spec.task).name
    results = {}
    for optimizer in optimizers:
        mine = for_optimizer(
            spec, optimizer, space if optimizer == STACEY else baseline_space, study_name=f"{name}-{optimizer}"
        )
        study = run_study(replace(mine, output_dir=spec.output_dir / optimizer))
        trials = study.get_trials(deepcopy=False)
        chosen = winner(study)
        if chosen is None:  # every search trial was pruned or diverged: there is nothing to compare at
            raise NoTrialSucceeded(f"study {study.study_name!r}: no trial completed, so {optimizer} has no best config")
        best = chosen.trial
        results[optimizer] = Tuned(
            optimizer=optimizer,
            study_name=study.study_name,
            options=dict(trial_options(best)),
            task_params=dict(best.user_attrs.get(TASK_PARAMS, {})),
            best_value=chosen.mean,
            complete=sum(t.state == TrialState.COMPLETE for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            epochs=epochs_spent(trials),
        )
    return results
