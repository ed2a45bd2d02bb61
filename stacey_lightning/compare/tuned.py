"""Equal-budget tuning before a comparison: every optimizer gets the same number of trials, sampler,
pruner and epochs per trial, so that "is Stacey better for my model?" is answered honestly.

Stacey searches its space (the task's preset or ``space``); each baseline searches its options
(the ``baselines`` preset or ``baseline_space``). Every optimizer's study is kept, one per optimizer,
in one storage (``sqlite:///<output_dir>/studies.db`` by default): running the comparison again
resumes the studies instead of starting over.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from stacey_lightning.baselines import STACEY
from stacey_lightning.compare.results import Tuned
from stacey_lightning.tuner.attributes import TASK_PARAMS
from stacey_lightning.tuner.trial import trial_options

__all__ = ["tune_each"]


def tune_each(
    task: str | Callable,
    optimizers: Sequence[str],
    *,
    n_trials: int,
    max_epochs: int,
    output_dir: str | os.PathLike,
    space: Any = None,
    baseline_space: Any = None,
    storage: Any = None,
    sampler: Any = None,
    pruner: Any = None,
    seed: int = 0,
    monitor: str | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    task_options: Mapping[str, Any] | None = None,
    anchors: bool = True,
) -> dict[str, Tuned]:
    """Tune every optimizer of ``optimizers`` with the same ``n_trials`` (each from its own anchors, unless
    ``anchors`` is False); returns each one's result by name."""
    from stacey_lightning.tasks import resolve_task
    from stacey_lightning.tuner.study import tune

    output_dir = Path(output_dir)
    storage = storage if storage is not None else f"sqlite:///{output_dir.resolve()}/studies.db"
    name = resolve_task(task).name
    results = {}
    for optimizer in optimizers:
        study = tune(
            task,
            space=space if optimizer == STACEY else baseline_space,
            n_trials=n_trials,
            storage=storage,
            study_name=f"{name}-{optimizer}",
            monitor=monitor,
            max_epochs=max_epochs,
            sampler=sampler,
            pruner=pruner,
            trainer_kwargs=trainer_kwargs,
            output_dir=output_dir / "tuning" / optimizer,
            seed=seed,
            task_options=task_options,
            optimizer=optimizer,
            anchors=anchors,
        )
        trials = study.get_trials(deepcopy=False)
        best = study.best_trial
        results[optimizer] = Tuned(
            optimizer=optimizer,
            study_name=study.study_name,
            options=dict(trial_options(best)),
            task_params=dict(best.user_attrs.get(TASK_PARAMS, {})),
            best_value=best.value,
            complete=sum(t.state == TrialState.COMPLETE for t in trials),
            pruned=sum(t.state == TrialState.PRUNED for t in trials),
            failed=sum(t.state == TrialState.FAIL for t in trials),
            epochs=sum(len(t.intermediate_values) for t in trials),
        )
    return results
