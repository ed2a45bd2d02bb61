"""The geometry finder: cliff detection, the budget it keeps, the files it writes and who can read them."""

import math
import subprocess
import sys

import pytest
import yaml

from stacey_lightning import run
from stacey_lightning.cli import find_main
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.tasks.digits import make_digits
from stacey_lightning.tuner.finder import RUNS, find_cliff, find_for_task, find_geometry

TINY = {"limit_train_batches": 4, "limit_val_batches": 2, "accelerator": "cpu"}


def _range_test(cliff_at: int, steps: int = 60) -> list[float]:
    """A range test's losses: falling steadily, then climbing fast past step ``cliff_at``, with noise."""
    noise = [0.03 * math.sin(7.3 * k) for k in range(steps)]
    return [
        (3.0 - 2.0 * k / cliff_at if k <= cliff_at else 1.0 + 0.3 * (k - cliff_at) ** 1.5) + noise[k]
        for k in range(steps)
    ]


@pytest.mark.parametrize("cliff_at", [12, 30, 45])
def test_the_cliff_of_a_synthetic_range_test_is_found_where_the_loss_turns(cliff_at):
    cliff, smoothed = find_cliff(_range_test(cliff_at))
    assert abs(cliff - cliff_at) <= 2 and len(smoothed) == 60


def test_steps_after_a_non_finite_loss_are_dropped_and_the_cliff_is_before_it():
    losses = _range_test(30, steps=34) + [math.nan, 5.0, 1.0]
    cliff, smoothed = find_cliff(losses)
    assert abs(cliff - 30) <= 2 and len(smoothed) == 34


def test_no_cliff_while_the_loss_still_falls_or_never_fell():
    assert find_cliff([3.0 - 0.02 * k for k in range(50)])[0] is None
    assert find_cliff([3.0 + 0.01 * k for k in range(50)])[0] is None
    assert find_cliff([3.0, math.inf])[0] is None


def test_find_geometry_keeps_its_budget_and_leaves_the_model_as_it_was(tmp_path):
    module, data = run.build(make_digits, seed=0, options={"hidden": 16, "foreach": True})
    before = {name: value.clone() for name, value in module.state_dict().items()}
    lines = []
    result = find_geometry(
        module, data, max_epochs=3, p_candidates=(4.0, math.inf), trainer_kwargs=TINY,
        monitor="val_acc", direction="maximize", progress=lines.append,
    )  # fmt: skip
    assert result.steps_per_epoch == 4 and result.budget == math.floor(RUNS * 3 * 4)
    assert 0 < result.steps_used <= result.budget
    assert [test.p for test in result.range_tests] == [math.inf, 4.0]  # p = inf first: it measures c99
    assert result.p in (4.0, math.inf) and result.lr > 0 and result.config.tau_horizon == 1.0
    assert result.config.alpha == 0.0
    assert any("range test p = inf" in line for line in lines) and any("confirmation" in line for line in lines)
    assert all((module.state_dict()[name] == value).all() for name, value in before.items())
    assert "| p | steps | cliff lr |" in result.table()


def test_the_finders_steps_are_optimizer_steps_under_gradient_accumulation(tmp_path):
    module, data = run.build(make_digits, seed=0, options={"hidden": 16, "foreach": True})
    result = find_geometry(
        module, data, max_epochs=3, p_candidates=(math.inf,), monitor="val_acc", direction="maximize",
        trainer_kwargs={**TINY, "limit_train_batches": 8, "accumulate_grad_batches": 2},
    )  # fmt: skip
    assert result.steps_per_epoch == 4 and result.budget == math.floor(RUNS * 3 * 4)
    # Planned in optimizer steps, run in optimizer steps: 2 batches each (counting batches spent half).
    assert result.budget - 2 <= result.steps_used <= result.budget
    (test,) = result.range_tests
    assert len(test.lrs) == len(set(test.lrs))  # one lr per optimizer step, not one per batch


def test_stacey_find_writes_a_best_yaml_that_the_config_and_compare_read(tmp_path, capsys):
    output = tmp_path / "found"
    status = find_main(
        ["--task", "digits", "--task-option", "hidden=16", "--task-option", "foreach=true", "--max-epochs", "2",
         "--p", "4,inf", "--output", str(output), "--trainer", "limit_train_batches=4", "--trainer",
         "limit_val_batches=2", "--accelerator", "cpu"]
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert "pick: p " in printed and "optimizer steps of a budget of 12" in printed
    best = output / "best.yaml"
    assert (output / "finder.png").stat().st_size > 0
    assert best.read_text().startswith("# geometry finder on task 'digits'")
    config = StaceyConfig.from_source(best)
    assert config.tau_horizon == 1.0 and config.p in (4.0, math.inf)
    content = yaml.safe_load(best.read_text())
    assert content == config.to_dict()  # the tuner's best.yaml format: StaceyConfig.to_dict()

    from stacey_lightning.compare import compare

    comparison = compare(
        "digits", ["stacey"], [0], max_epochs=1, config=str(best), output_dir=tmp_path / "compare",
        trainer_kwargs=TINY, task_options={"hidden": 16, "foreach": True},
    )  # fmt: skip
    assert len(comparison.runs) == 1 and math.isfinite(comparison.runs[0].final_metric)


def test_a_study_starts_from_the_finders_config(tmp_path):
    from stacey_lightning import tune

    start = {**StaceyConfig(p=6.0, lr=0.0123, alpha=0.0, tau_horizon=1.0).to_dict()}
    study = tune(
        "digits", n_trials=1, max_epochs=1, output_dir=tmp_path, trainer_kwargs=TINY,
        task_options={"hidden": 16, "foreach": True}, start_from=start, confirm=False,
    )  # fmt: skip
    first = study.trials[0]
    assert first.user_attrs["anchor"] == "start_from"
    config = first.user_attrs["stacey_config"]
    assert config["p"] == pytest.approx(6.0) and config["lr"] == pytest.approx(0.0123)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--p", "1,4"], "every p must be > 1"),
        (["--task-option", "colour=red"], "Unknown digits option(s): colour"),
        (["--runs", "0"], "runs: must be a positive number"),
        (["--trainer", "accelerator=abacus"], "trainer settings"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(argv, message, tmp_path, capsys):
    status = find_main(["--task", "digits", "--max-epochs", "1", "--output", str(tmp_path), *argv])
    error = capsys.readouterr().err.strip()
    assert status == 2 and message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "best.yaml").exists()


def test_a_p_that_is_no_number_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        find_main(["--task", "digits", "--p", "four"])
    assert exited.value.code == 2
    assert "argument --p: expected comma-separated numbers" in capsys.readouterr().err.splitlines()[-1]


def test_bad_start_from_fails_before_the_study(tmp_path):
    from stacey_lightning.tuner.spec import study_spec

    with pytest.raises(ValueError, match="unknown key 'colour'"):
        study_spec("digits", output_dir=tmp_path, start_from={"colour": 1})
    with pytest.raises(ValueError, match="start_from: a Stacey config starts a Stacey study"):
        study_spec("digits", output_dir=tmp_path, optimizer="adamw", start_from={"p": 4})


def test_find_for_task_checks_its_arguments_before_training(tmp_path):
    with pytest.raises(ValueError, match="max_epochs"):
        find_for_task("digits", max_epochs=0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="p_candidates"):
        find_for_task("digits", max_epochs=1, p_candidates=(), output_dir=tmp_path)


def test_stacey_find_help_imports_nothing_heavy():
    code = (
        "import sys\nfrom stacey_lightning.cli import main\n"
        "try:\n    main(['find', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('loaded:', sorted(m for m in ('torch', 'lightning', 'optuna', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "loaded: []" in result.stdout and "--max-epochs" in result.stdout, result.stdout + result.stderr


def test_the_finder_benchmark_runs_end_to_end(tmp_path, monkeypatch):
    import importlib
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    output = tmp_path / "finder.md"
    importlib.import_module("finder").main(["--smoke", "--tasks", "digits", "--output", str(output)])
    text = output.read_text()
    assert "| task | pick | optimizer steps used / budget" in text and "| digits (val_acc) |" in text
    assert "Command: `python benchmarks/finder.py --smoke" in text and (tmp_path / "finder_digits.png").is_file()


def test_a_start_point_given_to_a_study_that_exists_joins_it(tmp_path, capsys):
    from stacey_lightning import tune

    options = {"task_options": {"hidden": 16, "foreach": True}, "trainer_kwargs": TINY, "confirm": False}
    first = {**StaceyConfig(p=6.0, lr=0.0123, alpha=0.0, tau_horizon=1.0).to_dict()}
    second = {**StaceyConfig(p=3.0, lr=0.0456, alpha=0.0, tau_horizon=1.0).to_dict()}
    tune("digits", n_trials=1, max_epochs=1, output_dir=tmp_path, start_from=first, **options)
    capsys.readouterr()
    study = tune("digits", n_trials=2, max_epochs=1, output_dir=tmp_path, start_from=second, **options)
    assert "start_from: its config joins study" in capsys.readouterr().out
    added = study.trials[1]
    assert added.user_attrs["anchor"] == "start_from 2" and added.state.name == "COMPLETE"
    assert added.user_attrs["stacey_config"]["lr"] == pytest.approx(0.0456)
    tune("digits", n_trials=2, max_epochs=1, output_dir=tmp_path, start_from=second, **options)
    assert "already has this config (trial 1)" in capsys.readouterr().out
    tune("digits", n_trials=2, max_epochs=1, output_dir=tmp_path, start_from={**second, "lr": 0.07}, **options)
    assert "its search is full: raise --n-trials or --budget" in capsys.readouterr().out
