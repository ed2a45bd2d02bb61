"""A study ends with the model: the best trial's final checkpoint kept as ``<output>/best.ckpt``, and only it."""

import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from best_model import checkpoints, kept, quiet_trainer, validated
from optuna.trial import TrialState
from tuning_tasks import FAST, TINY

from stacey_lightning.attributes import CONFIRMS, HOSTNAME, PID
from stacey_lightning.study import confirm
from stacey_lightning.study.spec import StudySpec
from stacey_lightning.tasks.digits import DigitsModule, make_digits
from stacey_lightning.tuner import best_checkpoint, tune

HELPERS = Path(__file__).parents[1] / "helpers"


class PruneTrialOne(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number == 1


def test_study_keeps_only_the_best_trials_model_and_it_loads_and_resumes(tmp_path, monkeypatch, capsys):
    removed = []
    remove = best_checkpoint._remove
    monkeypatch.setattr(best_checkpoint, "_remove", lambda path: (removed.append(path.name), remove(path)))
    study = tune("digits", n_trials=3, output_dir=tmp_path, task_options=TINY, pruner=PruneTrialOne(), **FAST)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    best = study.best_trial
    assert checkpoints(tmp_path) == [tmp_path / "best.ckpt"]
    assert kept(tmp_path)["trial"] == best.number
    # The pruned trial never saved one; trial 2's was deleted if it was not better than trial 0's.
    assert removed == ([] if best.number == 2 else ["trial-2.ckpt"])
    out = capsys.readouterr().out
    assert f"best.ckpt: trial #{best.number}'s model" in out and "model to " in out

    assert validated(tmp_path / "best.ckpt", FAST["trainer_kwargs"]["limit_val_batches"]) == pytest.approx(best.value)
    module = DigitsModule.load_from_checkpoint(tmp_path / "best.ckpt")
    assert module.stacey_config().to_dict() == best.user_attrs["stacey_config"]
    checkpoint = torch.load(tmp_path / "best.ckpt", weights_only=False)
    assert {"z", "m"} <= set(checkpoint["optimizer_states"][0]["state"][0])  # Stacey's state, to resume
    # One more epoch from it: the loops resume at epoch 2 with the trained optimizer state.
    _, datamodule = make_digits(None, seed=0, **TINY)
    trainer = quiet_trainer(max_epochs=3, limit_train_batches=10, limit_val_batches=3)
    trainer.fit(module, datamodule=datamodule, ckpt_path=tmp_path / "best.ckpt")
    assert (trainer.current_epoch, trainer.global_step) == (3, 30)


def _waiting(output: Path, study: optuna.Study, number: int, folder: bool) -> None:
    """A trial's saved checkpoint, as a file or as an FSDP2 folder of shards, holding its number."""
    path = best_checkpoint.trial_checkpoint(output, study.study_name, number)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        path.mkdir()
        path = path / "shard"
    path.write_text(str(number))


def _spec(output: Path, study: optuna.Study, n_trials: int) -> StudySpec:
    return StudySpec(task="digits", optimizer="stacey", space=None, n_trials=n_trials, max_epochs=1, budget=None,
                     storage=None, study_name=study.study_name, monitor="val_acc",
                     direction=study.direction.name.lower(), output_dir=output)  # fmt: skip


def test_settle_keeps_the_best_by_direction_replaces_folders_and_leaves_running_trials(tmp_path):
    study = optuna.create_study(direction="minimize")
    spec = _spec(tmp_path, study, n_trials=3)  # too few trials for confirmation runs
    for value in (0.5, 0.3):
        study.add_trial(optuna.trial.create_trial(value=value))
    running = study.ask()
    for number in (0, 1):
        _waiting(tmp_path, study, number, folder=True)
    _waiting(tmp_path, study, running.number, folder=False)
    assert best_checkpoint.settle(study, spec).trial.number == 1
    assert (tmp_path / "best.ckpt" / "shard").read_text() == "1"
    waiting = best_checkpoint.trial_checkpoint(tmp_path, study.study_name, 0).parent
    assert [path.name for path in waiting.iterdir()] == ["trial-2.ckpt"]  # the running trial's is left alone
    assert best_checkpoint.settle(study, spec) is None

    study.tell(running, 0.1)
    assert best_checkpoint.settle(study, spec).trial.number == 2
    assert (tmp_path / "best.ckpt").read_text() == "2"  # a file in place of the folder
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.ckpt", "checkpoints"]
    assert best_checkpoint.kept_trial(tmp_path, study.study_name) == 2
    assert best_checkpoint.kept_trial(tmp_path, "another study") is None


def test_settle_follows_the_confirmed_winner_and_keeps_the_candidates_until_it_is_known(tmp_path):
    study = optuna.create_study(direction="maximize")
    spec = _spec(tmp_path, study, n_trials=6)  # 4 search trials, then 2 candidates on 1 more seed each
    assert confirm.plan(spec) == confirm.Plan(candidates=2, seeds=1)
    x = optuna.distributions.FloatDistribution(0.0, 1.0)
    for number, value in enumerate((0.5, 0.9, 0.8, 0.4)):
        _waiting(tmp_path, study, number, folder=False)
        study.add_trial(optuna.trial.create_trial(value=value, params={"x": value}, distributions={"x": x}))
        best_checkpoint.settle(study, spec)
    waiting = best_checkpoint.trial_checkpoint(tmp_path, study.study_name, 0).parent
    assert (tmp_path / "best.ckpt").read_text() == "1"
    assert [path.name for path in waiting.iterdir()] == ["trial-2.ckpt"]  # the other candidate

    for _ in range(2):
        confirm.enqueue_run(study, *confirm.missing_run(spec, study.get_trials(deepcopy=False)))
    assert confirm.missing_run(spec, study.get_trials(deepcopy=False)) is None
    of_1, of_2 = study.ask(), study.ask()
    assert [of_1.user_attrs[CONFIRMS], of_2.user_attrs[CONFIRMS]] == [1, 2]
    study.tell(of_2, 0.8)  # trial 2 confirmed first: it leads while trial 1's run is still to come
    assert best_checkpoint.settle(study, spec).trial.number == 2
    assert (tmp_path / "best.ckpt").read_text() == "2"
    assert [path.name for path in waiting.iterdir()] == ["trial-1.ckpt"]
    study.tell(of_1, 0.95)  # trial 1 wins back (mean 0.925 against 0.8); the study is decided
    assert best_checkpoint.settle(study, spec).trial.number == 1
    assert (tmp_path / "best.ckpt").read_text() == "1" and list(waiting.iterdir()) == []


class _Scored(DigitsModule):
    """Logs ``score``, fixed by the trial's number, so that the test decides which trial is best."""

    scores: dict = {}
    number = 0

    def validation_step(self, batch, batch_idx):
        super().validation_step(batch, batch_idx)
        self.log("score", self.scores[self.number])


def _scored(scores: dict):
    def make(trial=None):
        module, datamodule = make_digits(trial, **TINY)
        module.__class__ = _Scored
        module.scores, module.number = scores, trial.number
        return module, datamodule

    return make


make_scored = _scored({0: 0.5, 1: 0.7, 3: 0.6, 4: 0.9})  # trial 2 is killed
# 4 search trials, then trials 4 and 5 train the two best (1 and 2) again: 2 wins on the mean.
make_confirmed = _scored({0: 0.5, 1: 0.9, 2: 0.8, 3: 0.4, 4: 0.1, 5: 0.8})


def _tune_scored(output: Path, n_trials: int, make=make_scored) -> optuna.Study:
    return tune(make, n_trials=n_trials, output_dir=output, study_name="scored", monitor="score",
                direction="maximize", pruner="none", **{**FAST, "max_epochs": 1})  # fmt: skip


def test_the_model_is_the_confirmed_winners(tmp_path):
    study = _tune_scored(tmp_path, 6, make=make_confirmed)
    assert [t.user_attrs.get(CONFIRMS) for t in study.trials] == [None] * 4 + [1, 2]
    assert checkpoints(tmp_path) == [tmp_path / "best.ckpt"]
    assert kept(tmp_path)["trial"] == 2


def test_resumed_study_keeps_its_best_until_a_better_trial_and_cleans_a_killed_one(tmp_path):
    _tune_scored(tmp_path, 2)
    assert kept(tmp_path)["trial"] == 1
    kept_bytes = (tmp_path / "best.ckpt").read_bytes()
    # A worker killed after its trial saved the checkpoint and before the trial was told.
    study = optuna.load_study(study_name="scored", storage=f"sqlite:///{tmp_path}/optuna.db")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask()
    trial.set_user_attr(HOSTNAME, socket.gethostname())
    trial.set_user_attr(PID, dead.pid)
    leftover = best_checkpoint.trial_checkpoint(tmp_path, "scored", trial.number)
    leftover.write_bytes(kept_bytes)

    study = _tune_scored(tmp_path, 3)  # trial 2 is failed (its retry waits as #4); #3 is worse than #1
    assert [t.state for t in study.trials][2:4] == [TrialState.FAIL, TrialState.COMPLETE]
    assert checkpoints(tmp_path) == [tmp_path / "best.ckpt"]
    assert kept(tmp_path)["trial"] == 1 and (tmp_path / "best.ckpt").read_bytes() == kept_bytes

    _tune_scored(tmp_path, 4)  # trial 4 is better
    assert checkpoints(tmp_path) == [tmp_path / "best.ckpt"]
    assert kept(tmp_path)["trial"] == 4 and (tmp_path / "best.ckpt").read_bytes() != kept_bytes


def test_a_second_study_in_the_folder_is_refused_before_it_replaces_the_first_ones_model(tmp_path):
    _tune_scored(tmp_path, 2)
    kept_bytes, best_yaml = (tmp_path / "best.ckpt").read_bytes(), (tmp_path / "best.yaml").read_text()
    with pytest.raises(ValueError, match="holds the best.yaml and best.ckpt of study 'scored'; give study 'other'"):
        tune(make_scored, n_trials=1, output_dir=tmp_path, study_name="other", monitor="score",
             direction="maximize", **{**FAST, "max_epochs": 1})  # fmt: skip
    assert "other" not in optuna.get_all_study_names(f"sqlite:///{tmp_path}/optuna.db")
    assert (tmp_path / "best.ckpt").read_bytes() == kept_bytes and (tmp_path / "best.yaml").read_text() == best_yaml
    (tmp_path / "best.ckpt").unlink()  # best.yaml alone names its study too
    with pytest.raises(ValueError, match="of study 'scored'"):
        tune(make_scored, n_trials=1, output_dir=tmp_path, study_name="other", monitor="score", **FAST)
    assert len(_tune_scored(tmp_path, 2).trials) == 2  # its own study opens there


@pytest.mark.slow
def test_two_workers_keep_the_best_trials_model(tmp_path):
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    output = tmp_path / "out"
    study = tune(
        "tuning_tasks:make_rendezvous", n_trials=3, workers=2, monitor="val_acc", direction="maximize",
        output_dir=output, task_options={"rendezvous_dir": str(rendezvous)}, **{**FAST, "max_epochs": 1},
    )  # fmt: skip
    assert len({t.user_attrs["pid"] for t in study.trials}) == 2
    assert checkpoints(output) == [output / "best.ckpt"]
    assert kept(output)["trial"] == study.best_trial.number
    assert validated(output / "best.ckpt", FAST["trainer_kwargs"]["limit_val_batches"]) == pytest.approx(
        study.best_value
    )
