"""The geometry finder: cliff detection, the budget it keeps, the model it gives back as it was given (as
lr_find does), its figure, the files it writes and who can read them."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import run
from stacey_lightning.cli import find_main
from stacey_lightning.finder import RUNS, FinderResult, RangeTest, find_cliff, find_for_task, find_geometry
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.tasks.digits import make_digits

TINY = {"limit_train_batches": 4, "limit_val_batches": 2, "accelerator": "cpu"}
FSDP_SCRIPT = Path(__file__).parents[1] / "helpers" / "fsdp_find.py"


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


def _digits_at_p2():
    """The digits module set to p = 2 by its user, and what it is: its config, optimizer choice, weights."""
    module, data = run.build(make_digits, seed=0, options={"hidden": 16, "foreach": True})
    module.set_stacey_config({"p": 2.0, "lr": 0.05})
    before = (module.stacey_config(), module.optimizer_choice(), _weights(module))
    return module, data, before


def _weights(module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _as_it_was(module, before) -> bool:
    config, choice, weights = before
    now = _weights(module)
    same_weights = now.keys() == weights.keys() and all(torch.equal(now[name], weights[name]) for name in weights)
    return module.stacey_config() == config and module.optimizer_choice() == choice and same_weights


def _trained_p(module, data) -> set[float]:
    """The p of every param group of the next fit of ``module``."""
    trainer = run.make_trainer(max_epochs=1, logger=False, callbacks=[], trainer_kwargs=TINY)
    run.fit(trainer, module, data, seed=0)
    return {group["p"] for group in trainer.optimizers[0].param_groups}


def _spectral(config: StaceyConfig) -> bool:
    """Whether the config puts the hidden matrices in the spectral norm."""
    return config.kinds.get("matrix", {}).get("norm") == "spectral"


def test_find_geometry_keeps_its_budget_and_gives_the_model_back_as_it_was_given(tmp_path):
    module, data, before = _digits_at_p2()
    lines = []
    result = find_geometry(
        module, data, max_epochs=3, p_candidates=(4.0, math.inf), trainer_kwargs={**TINY, "default_root_dir": tmp_path},
        monitor="val_acc", direction="maximize", progress=lines.append,
    )  # fmt: skip
    assert result.steps_per_epoch == 4 and result.budget == math.floor(RUNS * 3 * 4)
    assert 0 < result.steps_used <= result.budget
    assert [test.p for test in result.range_tests] == [math.inf, 4.0]  # p = inf first: it measures c99
    assert result.config.tau_horizon == 1.0 and result.config.alpha == 0.0
    assert any("range test p = inf" in line for line in lines) and any("confirmation" in line for line in lines)
    # The pick is the best confirmation: a stable run before an unstable one, then the higher val_acc (the
    # earlier run on a tie), at the step it ran (half of it where it was unstable).
    scored = [c for c in result.confirmations if math.isfinite(c.score)]
    best = max([c for c in scored if c.stable] or scored, key=lambda confirmation: confirmation.score)
    assert (result.p, _spectral(result.config)) == (best.p, best.norm == "spectral")
    (picked,) = [test for test in result.range_tests if test.p == best.p]
    assert picked.pick_step == best.step / (1 if best.stable else 2)
    if best.p == math.inf:  # lr is the step itself at p = inf
        assert result.lr == pytest.approx(picked.pick_step)
    table = result.table()  # a row per range test and per confirmation, and the steps spent
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| p |")]
    assert len(rows) == len(result.range_tests) + len(result.confirmations) == 6
    assert f"{result.steps_used} optimizer steps of a budget of {result.budget}" in table
    # The MLP has a hidden matrix: Muon's geometry is confirmed too, at the factor p = inf chose.
    assert [(c.p, c.norm) for c in result.confirmations][2:] == [(4.0, "lp"), (math.inf, "spectral")]
    assert len(result.confirmations) == 4  # p = inf at two factors, then both others: spectral is one more
    assert any("confirmation p = spectral, rest inf" in line for line in lines)
    # As lr_find: the weights, the optimizer and config as given; the pick is applied only when asked.
    assert _as_it_was(module, before) and module.stacey_config().p == 2.0
    assert module.training and module._trainer is None
    assert list(tmp_path.iterdir()) == []  # the weights' checkpoint is removed
    assert _trained_p(module, data) == {2.0}


def test_apply_gives_the_model_the_pick(tmp_path):
    module, data, (_, _, weights) = _digits_at_p2()
    result = find_geometry(
        module, data, max_epochs=2, p_candidates=(3.0, math.inf), trainer_kwargs=TINY, apply=True,
    )  # fmt: skip
    assert module.stacey_config() == result.config and module.optimizer_choice().is_stacey
    assert all(torch.equal(module.state_dict()[name], value) for name, value in weights.items())
    assert _trained_p(module, data) == {result.p}


class _Failing(pl.Callback):
    """Raises ``error`` in the third short run of the finder, after its first optimizer step."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.runs = 0

    def on_train_start(self, trainer, pl_module):
        self.runs += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.runs == 3:
            raise self.error


@pytest.mark.parametrize("error", [RuntimeError("a probe failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_an_error_or_ctrl_c_mid_way_still_gives_the_model_back(error, tmp_path):
    module, data, before = _digits_at_p2()
    failing = _Failing(error)
    with pytest.raises(type(error)):
        find_geometry(
            module, data, max_epochs=3, p_candidates=(4.0, math.inf),
            trainer_kwargs={**TINY, "default_root_dir": tmp_path, "callbacks": [failing]},
        )  # fmt: skip
    assert failing.runs == 3  # two range tests, then the first confirmation run, which had trained a step
    assert _as_it_was(module, before) and list(tmp_path.iterdir()) == []
    assert _trained_p(module, data) == {2.0}


@pytest.mark.slow
def test_under_fsdp2_the_sharded_weights_come_back_through_the_strategy(tmp_path, subprocess_env):
    result = subprocess.run([sys.executable, str(FSDP_SCRIPT), "--out", str(tmp_path)], capture_output=True,
                            text=True, timeout=300, env=subprocess_env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    for record in records:
        assert record["same"] and record["p"] == 2.0 and record["checkpoints"] == [], record
        assert record["sharded"] and record["parameters"] == ["DTensor"] and record["trained_p"] == [2.0], record
    assert records[0]["pick"] == records[1]["pick"]  # both ranks read the same losses: the same runs, the same pick


class _Plain(pl.LightningModule):
    """A module without StaceyMixin, with its own optimizer: the finder adopts it for its runs only."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return nn.functional.mse_loss(self.layer(inputs), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(32, 4, generator=generator)
        return DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True)), batch_size=8)


def test_a_module_without_the_mixin_is_given_back_without_it(tmp_path):
    module = _Plain()
    weights = _weights(module)
    with pytest.warns(UserWarning, match="has no StaceyMixin"):
        find_geometry(module, max_epochs=2, p_candidates=(math.inf,), trainer_kwargs={"accelerator": "cpu"})
    assert type(module) is _Plain and "_optimizer_choice" not in vars(module)
    assert isinstance(module.configure_optimizers(), torch.optim.SGD)
    assert all(torch.equal(module.state_dict()[name], value) for name, value in weights.items())


class _UnevenBatches(_Plain):
    """Batches that differ a hundredfold in loss at any weights: every other one's inputs ten times larger."""

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(256, 4, generator=generator)
        inputs = inputs * torch.tensor([10.0, 1.0]).repeat_interleave(8).repeat(16)[:, None]  # large batch first
        return DataLoader(TensorDataset(inputs, inputs.sum(1, keepdim=True)), batch_size=8)


def test_range_tests_read_each_loss_over_its_batchs_loss_at_the_initial_weights(tmp_path):
    """Losses 100x apart from one batch to the next stopped a range test at its fifth step, the noise read as a
    cliff; over the reference run's losses (lr 0, the same batches) they start at 1 and go on to a real cliff."""
    module = _UnevenBatches()
    with pytest.warns(UserWarning, match="has no StaceyMixin"):
        result = find_geometry(module, max_epochs=2, p_candidates=(math.inf,), trainer_kwargs={"accelerator": "cpu"})
    (test,) = result.range_tests
    assert result.relative and result.budget == math.floor(RUNS * 2 * 32) and result.steps_used <= result.budget
    assert test.smoothed[0] == pytest.approx(1.0, abs=0.01)  # the first steps, at lr 1e-5, change nothing
    assert len(test.lrs) > 10 and max(test.losses[:10]) > 50 * min(test.losses[:10])
    assert "lowest loss over the reference's" in result.table()


def _result() -> FinderResult:
    """A finder's result without training: two range tests with their cliffs, the pick at p = 4."""
    tests = []
    for p, cliff_at in ((math.inf, 30), (4.0, 25)):
        losses = _range_test(cliff_at)
        cliff, smoothed = find_cliff(losses)
        lrs = [1e-4 * 1.1**k for k in range(len(losses))]
        pick = lrs[cliff] / 20
        tests.append(RangeTest(p, lrs, losses, smoothed, cliff, gradient_scale=0.01, edge_step=lrs[cliff],
                               pick_step=pick, pick_lr=pick))  # fmt: skip
    config = StaceyConfig(p=4.0, lr=tests[1].pick_lr, alpha=0.0, tau_horizon=1.0)
    return FinderResult(
        config=config, gradient_scale=0.01, range_tests=tests, confirmations=[], steps_used=100, budget=120,
        steps_per_epoch=10, max_epochs=8, runs=RUNS,
    )  # fmt: skip


def test_the_figure_is_drawn_without_touching_the_users_pyplot(users_pyplot, tmp_path):
    from matplotlib.figure import Figure

    result = _result()
    figure = result.plot()
    assert isinstance(figure, Figure) and len(figure.axes) == 1 and len(figure.axes[0].get_lines()) >= 2
    ax = Figure().add_subplot()
    assert result.plot(ax=ax) is ax.figure and len(ax.get_lines()) >= 2  # into the caller's axes
    written = result.write(tmp_path / "found")
    assert written["finder.png"].stat().st_size > 0 and written["best.yaml"].is_file()


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
    assert "optimizer steps of a budget of 12" in printed
    best = output / "best.yaml"
    assert (output / "finder.png").stat().st_size > 0
    assert best.read_text().startswith("# geometry finder on task 'digits'")
    config = StaceyConfig.from_source(best)
    # The file holds the pick the command printed: its p, whether matrices are spectral, its lr.
    p, spectral, lr = re.search(r"pick: p (\S+?)(, matrix spectral)?(?:, conv spectral)?, lr (\S+),", printed).groups()
    assert (config.p, _spectral(config), f"{config.lr:.3g}") == (float(p), spectral is not None, lr)
    assert config.tau_horizon == 1.0
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
    from stacey_lightning.study.spec import study_spec

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

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    script = importlib.import_module("finder")
    seen = {}

    def record(name):  # the script's call of ``name``, unchanged, and what it returned
        real = getattr(script, name)
        monkeypatch.setattr(script, name, lambda *args, **kwargs: seen.setdefault(name, real(*args, **kwargs)))

    record("find_for_task")
    record("compare")
    output = tmp_path / "finder.md"
    script.main(["--smoke", "--tasks", "digits", "--output", str(output)])
    found, comparison = seen["find_for_task"][0], seen["compare"]
    # The pick is what was trained for the final metric, and the summary row reports both.
    (run,) = comparison.runs
    assert (float(run.options["p"]), run.options["lr"]) == (found.p, pytest.approx(found.lr))  # "inf" kept as text
    row = next(line for line in output.read_text().splitlines() if line.startswith("| digits (val_acc) |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    p = "inf" if found.p == math.inf else f"{found.p:g}"
    assert cells[1] == f"{found.geometry}, lr {found.lr:.3g}, tau_horizon 1, alpha 0"
    assert found.geometry.startswith(f"p {p}")
    assert cells[2] == f"{found.steps_used} / {found.budget}" and cells[5] == f"{run.final_metric:.4f}"
    gap = run.final_metric - script.TASKS["digits"]["study"][0]
    assert cells[7] == f"{gap:+.4f}" and cells[8].startswith("yes" if gap >= -0.005 else "no")
    assert (tmp_path / "finder_digits.png").is_file()


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
