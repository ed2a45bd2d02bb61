import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacey_lightning.cli import COMMANDS, compare_main, main, report_parser, tune_main, tune_parser
from stacey_lightning.study import spec as spec_module
from stacey_lightning.tuner import tuning as study_module


def test_tune_main_runs_a_study(tmp_path, capsys):
    status = tune_main(
        [
            "--task",
            "digits",
            "--n-trials",
            "1",
            "--max-epochs",
            "1",
            "--output",
            str(tmp_path),
            "--task-option",
            "foreach=true",
            "--task-option",
            "hidden=8",
        ]
    )
    assert status == 0 and (tmp_path / "best.yaml").is_file()
    assert "trial 1 of 1" in capsys.readouterr().out


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert tune_main(["--task", "nope", "--output", str(tmp_path)]) == 2
    assert "Unknown task 'nope'" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_python_dash_m_dispatches_to_tune():
    result = subprocess.run(
        [sys.executable, "-m", "stacey_lightning", "tune", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--n-trials" in result.stdout


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_lightnings_banners_show_once_per_command_and_every_run_with_verbose(verbose, tmp_path):
    argv = (
        "compare --task digits --optimizers stacey,adamw --seeds 1 --max-epochs 1 --task-option hidden=8 "
        "--task-option foreach=true --trainer limit_train_batches=2 --trainer limit_val_batches=1 --accelerator cpu"
    ).split()
    argv += ["--output", str(tmp_path), *(["--verbose"] if verbose else [])]
    result = subprocess.run([sys.executable, "-m", "stacey_lightning", *argv], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    screen = result.stdout + result.stderr
    assert "[1/2] stacey seed 0" in screen and "[2/2] adamw seed 0" in screen  # the command's own lines
    for banner in ("GPU available", "TPU available", "Tip: ", "`Trainer.fit` stopped"):
        assert (screen.count(banner) >= 2) if verbose else (screen.count(banner) == 1), (banner, screen)


HEAVY = ("torch", "lightning", "optuna", "matplotlib")


@pytest.mark.parametrize("argv", [["tune", "--help"], ["compare", "--help"], ["report", "--help"], ["--help"]])
def test_help_answers_without_importing_torch_lightning_optuna_or_matplotlib(argv):
    code = (
        "import sys\nfrom stacey_lightning.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "loaded: []" in result.stdout, result.stdout + result.stderr
    assert "usage:" in result.stdout


def test_python_dash_m_describes_every_command():
    result = subprocess.run([sys.executable, "-m", "stacey_lightning", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    shown = " ".join(result.stdout.split())  # argparse wraps the descriptions
    for name, (_, description) in COMMANDS.items():
        assert f"{name} {' '.join(description.split())}" in shown, name


def test_tune_main_hands_every_flag_to_the_study_spec(monkeypatch):
    seen = {}
    monkeypatch.setattr(spec_module, "study_spec", lambda task, **kwargs: seen.update(task=task, **kwargs))
    monkeypatch.setattr(study_module, "run_study", lambda spec: None)
    argv = (
        "--task t:make --n-trials 3 --max-epochs 2 --space vision --storage journal:j.log --study-name s "
        "--output out --workers 2 --timeout 60 --seed 7 --accelerator cpu --devices 2 --strategy ddp "
        "--metric val_loss --direction minimize --task-option hidden=8 --sampler gp --pruner median --geometry "
        "--no-anchors --trainer limit_train_batches=5 --trainer precision=bf16-mixed --storage-outage 30"
    ).split()
    assert tune_main(argv) == 0
    assert seen == dict(
        task="t:make", space="vision", n_trials=3, timeout=60.0, storage="journal:j.log", study_name="s",
        monitor="val_loss", direction="minimize", max_epochs=2, sampler="gp", pruner="median",
        trainer_kwargs={"limit_train_batches": 5, "precision": "bf16-mixed", "accelerator": "cpu", "devices": 2,
                        "strategy": "ddp"},
        workers=2, output_dir="out", seed=7, task_options={"hidden": 8}, geometry=True, anchors=False,
        storage_outage_s=30.0, budget=None, confirm=True, start_from=None,
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--timeout", "-5"], "timeout: must be a positive number of seconds, got -5.0"),
        (["--strategy", "nosuch"], "trainer settings (strategy='nosuch'): You selected an invalid strategy name"),
        (["--accelerator", "cuda", "--devices", "2"], "accelerator is not available"),
        (["--trainer", "no_such_argument=1"], "no_such_argument"),
        (["--storage-outage", "-1"], "storage_outage_s: must be a number of seconds >= 0"),
    ],
)
def test_inputs_lightning_or_the_spec_refuse_fail_in_one_line_before_any_trial(argv, words, tmp_path, capsys):
    assert tune_main(["--task", "digits", "--output", str(tmp_path), *argv]) == 2
    error = capsys.readouterr().err
    assert words in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "optuna.db").exists()


def test_every_command_spells_the_study_flag_study_name_and_keeps_the_old_spelling():
    assert report_parser().parse_args(["sqlite:///x.db", "--study-name", "a"]).study_name == "a"
    assert report_parser().parse_args(["sqlite:///x.db", "--study", "a"]).study_name == "a"
    assert tune_parser().parse_args(["--task", "x", "--study-name", "a"]).study_name == "a"


def test_torchrun_takes_monitor_for_itself_so_metric_spells_it():
    from torch.distributed.run import get_args_parser

    torchrun = get_args_parser().parse_args("--nproc-per-node 2 -m stacey_lightning tune --metric val_loss".split())
    assert torchrun.training_script_args == ["tune", "--metric", "val_loss"]
    assert tune_parser().parse_args(torchrun.training_script_args[1:] + ["--task", "x"]).monitor == "val_loss"
    with pytest.raises(SystemExit):  # torchrun's own parser refuses --monitor: why --metric exists
        get_args_parser().parse_args("--nproc-per-node 2 -m stacey_lightning tune --monitor=val_loss".split())


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["--storage", "postgresql://u:secret@127.0.0.1:1/db"],
            "cannot open storage postgresql://u:***@127.0.0.1:1/db",
        ),
        (["--storage", "mysql://x"], "no driver for mysql"),
        (["--storage", "nonsense"], "is not a database URL"),
        (["--task-option", "nope=1"], "Unknown digits option(s): nope"),
        (["--space", "no-such-space.yaml"], "neither a preset"),
        (["--sampler", "optuna.samplers.Nope"], "sampler:"),
    ],
)
def test_a_users_mistake_is_one_line_and_exit_status_2(tmp_path, capsys, argv, words):
    assert tune_main(["--task", "digits", "--output", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stacey-tune: error: ") and words in err, err
    assert "secret" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "tensorboard").exists()  # nothing trained


def test_every_trial_failing_is_exit_status_1_with_the_reason(tmp_path, capsys):
    argv = f"--task tuning_tasks:make_always_failing --n-trials 2 --output {tmp_path}".split()
    assert tune_main(argv) == 1
    captured = capsys.readouterr()
    first = next(line for line in captured.out.splitlines() if "(#0 FAIL" in line)
    assert first.endswith(": RuntimeError: task failure on purpose)")  # the reason, on the progress line
    assert "stacey-tune: error: " in captured.err and "task failure on purpose" in captured.err


@pytest.mark.slow
def test_console_script_imports_a_task_from_the_current_folder(tmp_path):
    (tmp_path / "mynet.py").write_text(
        "from stacey_lightning.tasks.digits import make_digits\n\n"
        "def make(trial=None, seed=0):\n    return make_digits(trial, hidden=8, seed=seed, foreach=True)\n"
    )
    script = Path(sys.executable).with_name("stacey-tune")
    argv = [str(script), "--task", "mynet:make", "--n-trials", "1", "--max-epochs", "1", "--metric", "val_acc"]
    result = subprocess.run(
        argv + ["--direction", "maximize"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trial 1 of 1 (#0 COMPLETE" in result.stdout


def test_compare_main_hands_its_study_flags_to_the_same_settings(monkeypatch):
    """stacey-compare's tuning flags reach compare() as study_spec's settings, by study_spec's names."""
    import stacey_lightning.compare

    seen = {}
    monkeypatch.setattr(
        stacey_lightning.compare,
        "compare",
        lambda task, optimizers, seeds, **kwargs: (
            seen.update(task=task, optimizers=optimizers, seeds=seeds, **kwargs)
            or (_ for _ in ()).throw(KeyboardInterrupt)
        ),
    )
    argv = (
        "--task t:make --optimizers stacey,muon --seeds 2 --seed 5 --tune-trials 6 --tune-budget 40 --max-epochs 4 "
        "--space language --baseline-space b.yaml --storage journal:j.log --sampler gp --pruner none --no-confirm "
        "--metric val_loss --direction minimize --task-option hidden=8 --trainer limit_train_batches=3 "
        "--output out --storage-outage 9"
    ).split()
    assert compare_main(argv) == 130
    assert seen == dict(
        task="t:make", optimizers=["stacey", "muon"], seeds=[5, 6], config=None, optimizer_options={},
        output_dir="out", progress=print, baseline_space="b.yaml", n_trials=6, budget=40, seed=5, max_epochs=4,
        space="language", storage="journal:j.log", sampler="gp", pruner="none", confirm=False, anchors=True,
        monitor="val_loss", direction="minimize", task_options={"hidden": 8}, trainer_kwargs={"limit_train_batches": 3},
        geometry=False, storage_outage_s=9.0,
    )  # fmt: skip
