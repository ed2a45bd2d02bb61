"""StaceyPruning stops a trial when the pruner says so, except after its last validation, when there
is no training left to save (the trial then completes with its value)."""

import optuna
from optuna.trial import TrialState
from tuning_tasks import FAST, TINY

from stacey_lightning.tuner.tuning import tune


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def test_pruned_when_training_is_left_completed_after_the_last_validation(tmp_path):
    settings = dict(task_options=TINY, pruner=AlwaysPrune(), anchors=False, n_trials=1)
    two = tune("digits", output_dir=tmp_path / "two", **settings, **FAST)  # FAST: 2 epochs
    assert two.trials[0].state == TrialState.PRUNED and "pruned at epoch 0" in two.trials[0].user_attrs["stop_reason"]
    one = tune("digits", output_dir=tmp_path / "one", **settings, **{**FAST, "max_epochs": 1})
    assert one.trials[0].state == TrialState.COMPLETE and one.trials[0].value == one.trials[0].intermediate_values[0]
