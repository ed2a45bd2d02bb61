"""stacey-compare on the digits task: TensorBoard runs read back, the figure, the tables, seeding, errors."""

from __future__ import annotations

import csv
import logging
import math
import statistics

import numpy as np
import optuna
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from stacey_lightning.cli import compare_main, tune_main
from stacey_lightning.cli.commands import _parse_setting
from stacey_lightning.compare import compare
from stacey_lightning.compare.outputs import Curves, plot, write_tables
from stacey_lightning.compare.results import Comparison, RunResult, summarize
from stacey_lightning.lightning.config import StaceyConfig

OPTIMIZERS = ("stacey", "adamw", "sgd", "lion")
SEEDS = (0, 1)
BATCHES = 6  # training batches per run: enough for curves, a few seconds for all 8 runs
DIGITS_PARAMETERS = 64 * 128 + 128 + 128 * 10 + 10


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    return compare(
        "digits",
        OPTIMIZERS,
        seeds=len(SEEDS),
        max_epochs=1,
        output_dir=tmp_path_factory.mktemp("compare"),
        trainer_kwargs={"limit_train_batches": BATCHES, "limit_val_batches": 3},
        optimizer_options={"stacey": {"p": 3.0}, "adamw": {"lr": 1e-3}},
        task_options={"foreach": True},
    )  # Stacey without torch.compile: no compile time


def _events(run_dir):
    events = EventAccumulator(run_dir, size_guidance={SCALARS: 0})
    events.Reload()
    return events


def _values(events, tag):
    return [(point.step, point.value) for point in events.Scalars(tag)]


def test_every_optimizer_and_seed_has_a_run_with_its_curves(comparison):
    assert [(run.optimizer, run.seed) for run in comparison.runs] == [(o, s) for s in SEEDS for o in OPTIMIZERS]
    for run in comparison.runs:
        assert run.run_dir.replace("\\", "/").endswith(f"tensorboard/{run.optimizer}/seed-{run.seed}")
        events = _events(run.run_dir)
        loss = _values(events, "train_loss")
        assert [step for step, _ in loss] == list(range(BATCHES))
        assert all(math.isfinite(value) for _, value in loss)
        ((step, val_acc),) = _values(events, "val_acc")
        assert step == BATCHES - 1
        assert val_acc == pytest.approx(run.final_metric)
        assert 0.0 <= val_acc <= 1.0
        assert _values(events, "hp/val_acc") == [(BATCHES, pytest.approx(run.final_metric))]


def test_hparams_hold_the_optimizer_options_and_seed(comparison):
    expected_lr = {"stacey": 0.03, "adamw": 1e-3, "sgd": 0.1, "lion": 1e-3}  # stacey: digits' own lr
    for run in comparison.runs:
        content = _events(run.run_dir).PluginTagToContent("hparams")
        assert "_hparams_/experiment" in content
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = start.session_start_info.hparams
        assert hparams["optimizer"].string_value == run.optimizer
        assert hparams["seed"].number_value == run.seed
        assert hparams["lr"].number_value == pytest.approx(expected_lr[run.optimizer])
        assert "hp_metric" not in _events(run.run_dir).Tags()["scalars"]  # no placeholder -1
    stacey = next(run for run in comparison.runs if run.optimizer == "stacey")
    assert stacey.options["p"] == 3.0  # the override reached the module's config


def test_same_seed_same_first_loss_across_optimizers(comparison):
    # The first loss is computed before any optimizer step: equal iff weights and first batch are equal.
    first = {(run.optimizer, run.seed): _values(_events(run.run_dir), "train_loss")[0][1] for run in comparison.runs}
    for seed in SEEDS:
        assert len({first[(name, seed)] for name in OPTIMIZERS}) == 1
    assert first[("adamw", 0)] != first[("adamw", 1)]


def test_figure_decodes_and_is_not_blank(comparison):
    import matplotlib.image

    image = matplotlib.image.imread(comparison.figure)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].var() > 0


def test_the_figure_is_drawn_without_touching_the_users_pyplot(users_pyplot):
    from matplotlib.figure import Figure

    steps = np.arange(20)
    curves = Curves(
        loss_steps=steps, loss=np.linspace(2.0, 1.0, 20), loss_seconds=steps * 0.01,
        metric_steps=np.array([9, 19]), metric=np.array([0.5, 0.7]), metric_seconds=np.array([0.09, 0.19]),
    )  # fmt: skip
    figure = plot({"stacey": [curves, curves], "adamw": [curves]}, "val_acc")
    assert isinstance(figure, Figure) and len(figure.axes) == 4 and len(figure.axes[0].get_lines()) == 2
    axes = Figure().subplots(2, 2, squeeze=False)
    assert plot({"stacey": [curves]}, "val_acc", axes=axes) is axes[0][0].figure  # into the caller's axes
    assert all(len(axis.get_lines()) == 1 for axis in axes.ravel())


def test_tables_name_every_optimizer_with_consistent_numbers(comparison):
    with open(comparison.csv, newline="") as stream:
        rows = {row["optimizer"]: row for row in csv.DictReader(stream)}
    assert list(rows) == list(OPTIMIZERS)
    for name, row in rows.items():
        finals = [run.final_metric for run in comparison.runs if run.optimizer == name]
        assert float(row["final_val_acc_mean"]) == pytest.approx(statistics.fmean(finals))
        assert float(row["final_val_acc_std"]) == pytest.approx(statistics.stdev(finals))
        assert float(row["seconds_per_step"]) > 0
        assert row["peak_cuda_bytes"] == ""  # CPU run: no CUDA counter
    # One float32 buffer per parameter (SGD's momentum, Lion's exp_avg); two for AdamW and Stacey.
    assert int(rows["sgd"]["optimizer_state_bytes"]) == 4 * DIGITS_PARAMETERS
    assert int(rows["lion"]["optimizer_state_bytes"]) == 4 * DIGITS_PARAMETERS
    assert int(rows["stacey"]["optimizer_state_bytes"]) >= 2 * 4 * DIGITS_PARAMETERS
    markdown = open(comparison.markdown).read()
    for name in OPTIMIZERS:
        assert f"| {name} | 2 |" in markdown
    with open(comparison.runs_csv, newline="") as stream:
        assert len(list(csv.DictReader(stream))) == len(OPTIMIZERS) * len(SEEDS)


def test_a_diverged_seed_is_counted_not_averaged_in(tmp_path):
    """A run whose final metric is NaN (SGD diverged on one seed of a benchmark) must not crash the tables
    nor hide the other seeds: mean ± std over the finite runs, and the count of diverged ones."""

    def result(seed, final):
        return RunResult("sgd", seed, str(tmp_path), final, 0.01, 4, None, {}, np.zeros(0), np.zeros(0))

    runs = [result(0, 3.0), result(1, 3.5), result(2, math.nan)]
    paths = [str(tmp_path / name) for name in ("compare.md", "compare.csv", "runs.csv")]
    comparison = Comparison(monitor="val_bpc", runs=runs, figure="", markdown=paths[0], csv=paths[1], runs_csv=paths[2])
    write_tables(comparison, ["sgd"])
    with open(paths[1], newline="") as stream:
        (row,) = csv.DictReader(stream)
    assert float(row["final_val_bpc_mean"]) == 3.25 and row["diverged"] == "1"
    assert float(row["final_val_bpc_std"]) == pytest.approx(0.3536, abs=1e-4)
    assert "| sgd | 3 | 3.2500 ± 0.3536 (1 of 3 seeds diverged) |" in open(paths[0]).read()
    assert summarize([math.nan, math.inf]).text() == "nan (2 of 2 seeds diverged)"


def test_clock_elapsed_grows_with_steps(comparison):
    for run in comparison.runs:
        assert list(run.clock_steps) == list(range(BATCHES))
        assert run.clock_elapsed[0] == 0.0  # first step (one-time costs) not counted
        assert np.all(np.diff(run.clock_elapsed) > 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizers": ("stacey", "adamz")}, "adamz"),
        ({"optimizers": ("sgd",), "optimizer_options": {"sgd": {"momentun": 0.9}}}, "momentun"),
        ({"optimizers": ("adamw",), "optimizer_options": {"lion": {"lr": 1e-4}}}, "lion"),
        ({"optimizers": ("stacey",), "optimizer_options": {"stacey": {"p": 0.5}}}, "p"),
        ({"optimizers": ("torch.optim.NoSuchThing",)}, "torch.optim.NoSuchThing"),
        ({"optimizers": ("sgd", "sgd")}, "twice"),
        ({"seeds": 0}, "seeds"),
        ({"trainer_kwargs": {"logger": False}}, "logger"),
    ],
)
def test_bad_arguments_fail_before_training(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare("digits", output_dir=tmp_path, **kwargs)
    assert not (tmp_path / "tensorboard").exists()


def test_unlogged_monitor_names_the_logged_metrics(tmp_path):
    with pytest.raises(ValueError, match="val_bpc.*val_acc"):
        compare(
            "digits",
            ("sgd",),
            seeds=1,
            max_epochs=1,
            monitor="val_bpc",
            output_dir=tmp_path,
            trainer_kwargs={"limit_train_batches": 2, "limit_val_batches": 1},
        )


def test_parse_setting_reads_numbers_and_names_bad_input():
    assert _parse_setting("adamw.lr=1e-3", ["adamw"]) == ("adamw", "lr", 1e-3)
    assert _parse_setting("stacey.p=inf", ["stacey"])[2] == math.inf
    assert _parse_setting("torch.optim.SGD.nesterov=true", ["torch.optim.SGD"]) == ("torch.optim.SGD", "nesterov", True)
    with pytest.raises(ValueError, match="OPTIMIZER.KEY=VALUE"):
        _parse_setting("lr=1e-3", ["adamw"])
    with pytest.raises(ValueError, match="not among"):
        _parse_setting("lion.lr=1e-3", ["adamw"])


def test_cli_reports_bad_input_with_exit_status_2(tmp_path, capsys):
    assert (
        compare_main(["--task", "digits", "--optimizers", "sgd", "--set", "adamw.lr=1", "--output", str(tmp_path)]) == 2
    )
    assert "adamw" in capsys.readouterr().err


def test_cli_end_to_end_with_one_seed(tmp_path, capsys):
    assert (
        compare_main(
            [
                "--task",
                "digits",
                "--optimizers",
                "sgd,torch.optim.RAdam",
                "--seeds",
                "1",
                "--max-epochs",
                "1",
                "--task-option",
                "hidden=8",
                "--set",
                "torch.optim.RAdam.lr=0.01",
                "--trainer",
                "limit_train_batches=4",
                "--output",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| sgd |", "| torch.optim.RAdam |"))]
    assert len(rows) == 2 and all("±" not in row for row in rows)  # no std of a single seed
    assert '- torch.optim.RAdam: `{"lr": 0.01, "weight_decay": 0}`' in out  # its class default, made explicit
    assert (tmp_path / "tensorboard" / "torch.optim.RAdam" / "seed-0").is_dir()
    assert (tmp_path / "compare.png").stat().st_size > 0


def test_best_yaml_and_seed_rebuild_the_best_trial_exactly(tmp_path, capsys):
    tune_argv = "--task tuning_tasks:make_sampling_hidden --n-trials 2 --max-epochs 1 --pruner none --seed 3 "
    tune_argv += f"--metric val_acc --direction maximize --output {tmp_path / 'tune'}"
    tune_argv += " --trainer limit_train_batches=5 --trainer limit_val_batches=2"
    assert tune_main(tune_argv.split()) == 0
    study = optuna.load_study(study_name="make_sampling_hidden", storage=f"sqlite:///{tmp_path / 'tune' / 'optuna.db'}")
    best = yaml.safe_load((tmp_path / "tune" / "best.yaml").read_text())
    assert best["task"] == {"hidden": study.best_trial.params["hidden"]}  # the task's own sampled parameter
    StaceyConfig.from_source(tmp_path / "tune" / "best.yaml")  # still a Stacey config file
    compare_argv = "--task tuning_tasks:make_sampling_hidden --optimizers stacey --seeds 1 --seed 3 --max-epochs 1 "
    compare_argv += f"--metric val_acc --config {tmp_path / 'tune' / 'best.yaml'} --output {tmp_path / 'compare'}"
    compare_argv += " --trainer limit_train_batches=5 --trainer limit_val_batches=2"
    assert compare_main(compare_argv.split()) == 0
    with open(tmp_path / "compare" / "runs.csv") as stream:
        (row,) = list(csv.DictReader(stream))
    assert float(row["final_val_acc"]) == study.best_value  # exactly: same model, seed, data order and steps


def test_tune_trials_tunes_every_optimizer_with_the_same_budget_and_resumes(tmp_path, capsys):
    argv = (
        "--task digits --optimizers stacey,sgd --tune-trials 2 --seeds 2 --max-epochs 1 --task-option hidden=8 "
        f"--task-option foreach=true --output {tmp_path} --trainer limit_train_batches=5 --trainer limit_val_batches=2"
    ).split()
    assert compare_main(argv) == 0
    out = capsys.readouterr().out
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    assert sorted(optuna.get_all_study_names(storage)) == ["digits-sgd", "digits-stacey"]  # one study each
    for name in ("digits-sgd", "digits-stacey"):
        assert len(optuna.load_study(study_name=name, storage=storage).trials) == 2
    header = next(line for line in out.splitlines() if line.startswith("| optimizer |"))
    assert "tuning trials (complete / pruned / failed)" in header and "tuning epochs" in header
    rows = [line for line in out.splitlines() if line.startswith(("| stacey |", "| sgd |"))]
    assert len(rows) == 2 and all(" ± " in row for row in rows)
    sgd = optuna.load_study(study_name="digits-sgd", storage=storage)
    assert f'"lr": {sgd.best_trial.params["lr"]}' in out  # the table's options are each best trial's
    assert compare_main(argv) == 0  # resumes: the studies are complete, nothing more is tuned
    assert all(
        len(optuna.load_study(study_name=n, storage=storage).trials) == 2 for n in ("digits-sgd", "digits-stacey")
    )
