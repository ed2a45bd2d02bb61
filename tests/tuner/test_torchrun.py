"""A study launched by torchrun (2 CPU processes, plain DDP): rank 0 owns each trial and the other rank
trains it with the same hyperparameters; the metric is chosen with --metric, which torchrun leaves alone."""

import json
import subprocess
import sys

import optuna
import pytest


@pytest.mark.slow
def test_torchrun_study_runs_each_trial_once_on_both_ranks(tmp_path, subprocess_env):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "stacey_lightning", "tune", "--task", "tuning_tasks:make_recording",
        "--task-option", f"record_dir={tmp_path}", "--strategy", "ddp", "--devices", "2", "--accelerator", "cpu",
        "--metric", "val_loss", "--direction", "minimize", "--n-trials", "2", "--max-epochs", "1",
        "--output", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "monitor val_loss (minimize)" in result.stdout
    study = optuna.load_study(study_name="make_recording", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    runs = {rank: [json.loads(line) for line in (tmp_path / f"rank-{rank}.jsonl").read_text().splitlines()]
            for rank in (0, 1)}  # fmt: skip
    assert [run["config"] for run in runs[0]] == [run["config"] for run in runs[1]]
    assert [run["config"]["lr"] for run in runs[0]] == [t.user_attrs["stacey_config"]["lr"] for t in study.trials]


def test_a_follower_rank_that_starts_first_can_open_the_default_storage(tmp_path, monkeypatch):
    """Under torchrun rank 1 may reach the storage before rank 0 has made the output folder: it must open
    sqlite:///<output>/optuna.db all the same (it once failed with "unable to open database file")."""
    from stacey_lightning.execution import ddp
    from stacey_lightning.tuner import tuning as study

    opened = []
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(ddp, "follow_rank_zero", lambda storage, *rest: opened.append(storage))
    output = tmp_path / "runs" / "torchrun"
    study.tune("digits", n_trials=1, max_epochs=1, output_dir=output)
    assert len(opened) == 1 and isinstance(opened[0], optuna.storages.BaseStorage)
    assert (output / "optuna.db").is_file()
