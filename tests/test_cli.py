import subprocess
import sys

from stacey_lightning.cli import COMMANDS, main, tune_main, tune_parser


def test_parser_reads_every_flag():
    args = tune_parser().parse_args(
        [
            "--task",
            "digits",
            "--n-trials",
            "3",
            "--max-epochs",
            "2",
            "--space",
            "vision",
            "--storage",
            "journal:j.log",
            "--study-name",
            "s",
            "--output",
            "out",
            "--workers",
            "2",
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            "--strategy",
            "ddp",
            "--monitor",
            "val_loss",
            "--direction",
            "minimize",
            "--task-option",
            "hidden=8",
        ]
    )
    assert (args.n_trials, args.devices, args.direction, args.task_option) == (3, 2, "minimize", [("hidden", 8)])


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
    assert main(["frobnicate"]) == 2 and "tune" in COMMANDS


def test_python_dash_m_dispatches_to_tune():
    result = subprocess.run(
        [sys.executable, "-m", "stacey_lightning", "tune", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "--n-trials" in result.stdout
