import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import torch
from best_model import checkpoints, kept, validated

HELPERS = Path(__file__).parents[1] / "helpers"

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import optuna
from stacey_lightning.tuner import tune


class PruneTrialOne(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number == 1


if __name__ == "__main__":
    tune("tuning_tasks:make_recording", n_trials=2, max_epochs=2, output_dir={output!r}, pruner=PruneTrialOne(),
         monitor="val_acc", direction="maximize", task_options={{"record_dir": {output!r}, **{options!r}}},
         trainer_kwargs=dict(accelerator="cpu", devices=2, strategy={strategy!r}, limit_train_batches=6,
                             limit_val_batches=2))
"""


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn", "fsdp2"])
def test_ddp_one_trial_per_run_same_params_on_every_rank_and_pruning(tmp_path, strategy):
    # fsdp2: the module shards itself, and Stacey takes its default (compiled) path on the shards.
    options = {"sharded": True, "foreach": None} if strategy == "fsdp2" else {}
    script = tmp_path / "tune_ddp.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(HELPERS), output=str(tmp_path), strategy=strategy,
                                                    options=options)))  # fmt: skip
    env = {**os.environ, "PL_DISABLE_FORK": "1"}
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="make_recording", storage=f"sqlite:///{tmp_path}/optuna.db")
    assert len(study.trials) == 2
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert "pruned at epoch 0" in study.trials[1].user_attrs["stop_reason"]
    runs = {
        rank: [json.loads(line)["config"] for line in (tmp_path / f"rank-{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    }
    assert len(runs[0]) == 2 and runs[0] == runs[1]
    assert [run["lr"] for run in runs[0]] == [t.user_attrs["stacey_config"]["lr"] for t in study.trials]
    # The study ends with the best trial's model (tuner/best_checkpoint.py), saved by every rank.
    best = tmp_path / "best.ckpt"
    assert checkpoints(tmp_path) == [best] and kept(tmp_path)["trial"] == study.best_trial.number
    if strategy == "fsdp2":
        # A distributed checkpoint: a folder of shards, made one file by Lightning's consolidation.
        from lightning.fabric.utilities.load import _load_distributed_checkpoint

        assert best.is_dir() and (best / "meta.pt").is_file()
        torch.save(_load_distributed_checkpoint(best), tmp_path / "consolidated.ckpt")
        best = tmp_path / "consolidated.ckpt"
    # Each rank validated 2 batches of every other sample: together the first 4 batches.
    assert validated(best, 4) == pytest.approx(study.best_value)
