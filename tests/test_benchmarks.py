"""The benchmark scripts run end to end with --smoke and write their Markdown tables."""

import importlib
import math
import statistics
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark(monkeypatch):
    # The scripts import their shared _report helper from their own folder, as `python benchmarks/x.py` does.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return lambda name: importlib.import_module(name)


def _spy(monkeypatch, script, name: str) -> list[tuple[tuple, dict, object]]:
    """Every call of the script's function ``name`` as (args, kwargs, what it returned), the call unchanged."""
    calls = []
    real = getattr(script, name)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(script, name, spy)
    return calls


def _table(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header)) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _complete(trials) -> list:
    return [trial for trial in trials if trial.state == TrialState.COMPLETE]


def test_tuning_efficiency_smoke(benchmark, tmp_path, monkeypatch):
    script = benchmark("tuning_efficiency")
    rendered = _spy(monkeypatch, script, "render")
    output = tmp_path / "tuning_efficiency.md"
    script.main(["--smoke", "--output", str(output)])
    text = output.read_text()
    (((_, result), _, _),) = rendered
    # The grid: p 2 and inf at one lr and tau, one epoch each; its best and what a study must reach.
    grid = result["grid"].trials
    assert [float(trial.user_attrs["stacey_config"]["p"]) for trial in grid] == [2.0, math.inf]
    assert sum(len(trial.intermediate_values) for trial in grid) == 2
    for p, label in ((2.0, "2"), (math.inf, "inf")):
        (value,) = [t.value for t in _complete(grid) if float(t.user_attrs["stacey_config"]["p"]) == p]
        assert [label, f"{value:.4f}"] in [row[:2] for row in _table(text, "| p | best val_acc |")]
    threshold = max(trial.value for trial in _complete(grid)) - 0.005  # the default tolerance: 0.5 pp
    # The study's row: its epochs in trial order, up to the first completed trial within the tolerance.
    study = result["studies"][0]["study"]
    spent, reached = 0, None
    for trial in sorted(study.trials, key=lambda trial: trial.number):
        spent += len(trial.intermediate_values)
        if reached is None and trial.state == TrialState.COMPLETE and trial.value >= threshold:
            reached = f"{spent} (trial #{trial.number})", f"{spent / 2:.1%}"
    ((seed, _, epochs, _, best, to_target, fraction),) = _table(text, "| sampler seed |")
    assert (seed, epochs, best) == ("0", str(spent), f"{max(t.value for t in _complete(study.trials)):.4f}")
    if reached is None:
        assert to_target == "not reached" and fraction.startswith("not reached")
    else:
        assert to_target == reached[0] and fraction.startswith(reached[1])


def test_quality_smoke(benchmark, tmp_path, monkeypatch):
    script = benchmark("quality")
    rendered = _spy(monkeypatch, script, "render")
    output = tmp_path / "quality.md"
    script.main(["--smoke", "--optimizers", "stacey,sgd", "--output", str(output)])
    text = output.read_text()
    (((_, results), _, _),) = rendered
    assert [result["name"] for result in results] == ["digits", "textlm"]
    for result, maximize in zip(results, (True, False)):  # val_acc is maximized, val_bpc minimized
        comparison = result["comparison"]
        section = text.split(f"## {result['name']}, 2 tuning trials")[1].split("\n## ")[0]
        rows = {row[0]: row for row in _table(section, "| optimizer |")}
        means = {}
        for name in ("stacey", "sgd"):
            finals = [run.final_metric for run in comparison.runs if run.optimizer == name]
            finite = [value for value in finals if math.isfinite(value)]
            assert len(finals) == 2 and finite
            means[name] = statistics.fmean(finite)
            spread = f" ± {statistics.stdev(finite):.4f}" if len(finite) == 2 else ""
            assert rows[name][1].startswith(f"{means[name]:.4f}{spread}"), (name, rows[name])
        best = (max if maximize else min)(means, key=means.get)
        gap = (means["stacey"] - means["sgd"]) * (1 if maximize else -1)
        assert f"Best mean {comparison.monitor}: **{best}**. Stacey against the best baseline (sgd): {gap:+.4f}" in (
            section
        )


def test_samplers_smoke(benchmark, tmp_path, monkeypatch):
    script = benchmark("samplers")
    studies = _spy(monkeypatch, script, "tune")
    output = tmp_path / "samplers.md"
    script.main(["--smoke", "--tasks", "digits", "--output", str(output)])
    # Every sampler with the default pruner, then every other pruner with the default sampler: one study each.
    ran = [(kwargs["sampler"], kwargs["pruner"]) for _, kwargs, _ in studies]
    assert ran == [("tpe", "hyperband"), ("gp", "hyperband"), ("cmaes", "hyperband"), ("random", "hyperband"),
                   ("tpe", "median"), ("tpe", "none")]  # fmt: skip
    assert all(args == ("digits",) and kwargs["n_trials"] == 2 for args, kwargs, _ in studies)
    rows = _table(output.read_text(), "| sampler | pruner |")
    assert [tuple(row[:2]) for row in rows] == ran
    for row, (_, _, study) in zip(rows, studies):  # each cell: that study's best value and epochs trained
        epochs = sum(len(trial.intermediate_values) for trial in study.trials)
        assert row[2].startswith(f"{study.best_value:.4f} / {epochs} / "), row


def test_fidelity_ranks_a_made_up_study(benchmark, tmp_path):
    fidelity = benchmark("fidelity")
    output = tmp_path / "fidelity.md"
    fidelity.main(["--smoke", "--output", str(output)])
    # Trials 0..5 end at 0..5; after epoch 1 the odd ones are ahead of where they end: rho 29/35.
    assert "| made-up | 6 | 4 | +0.83 (epoch 1) | +0.83 (epoch 1) | +0.96 (epoch 2) | +1.00 (epoch 3) |" in (
        output.read_text()
    )
    assert fidelity.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert fidelity.spearman([1, 2, 3], [3, 2, 1]) == -1.0


def test_settled_smoke(benchmark, tmp_path, monkeypatch):
    settled = benchmark("settled")
    rendered = _spy(monkeypatch, settled, "render")
    output, workdir = tmp_path / "settled.md", tmp_path / "work"
    settled.main(["--smoke", "--workdir", str(workdir), "--output", str(output)])
    text = output.read_text()
    (((_, (result,)), _, _),) = rendered
    # Seed s of a config is the study trial's own run on seed s: seed 0's curve is the trial's, exactly.
    storage = f"sqlite:///{workdir / 'digits' / 'study' / 'optuna.db'}"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert len(result["configs"]) == len(trials) == 2
    for config, trial in zip(result["configs"], trials):
        assert len(config["curves"]) == 3 and config["curves"][0] == list(trial.intermediate_values.values())
    rows = {row[0]: row for row in _table(text, "| config | final val_acc")}
    for config in result["configs"]:
        finals = [curve[-1] for curve in config["curves"]]
        assert rows[config["name"]][1] == f"{statistics.fmean(finals):.4f} ± {statistics.stdev(finals):.4f}"
    # Two configs on three seeds: seed 0 of the first against the mean final of its seeds 1 and 2.
    configs = [{"curves": [[0.0, 0.5], [0.0, 0.7], [0.0, 0.9]]}, {"curves": [[0.0, 0.6], [0.0, 0.6], [0.0, 0.6]]}]
    rms, bias = settled.estimates(configs, settled._final)
    assert bias == pytest.approx(0.0) and rms == pytest.approx((0.3**2 * 2 / 6) ** 0.5)
    assert settled.picks_best(configs, settled._final, maximize=True) == (2, 3)  # seed 0: 0.5 against 0.6
    # Minimized, the second config is best (0.6); by the mean of both epochs (0.25, 0.35, 0.45 against 0.3) on 2.
    assert settled.picks_best(configs, settled._tail_mean, maximize=False) == (2, 3)


def test_schedules_smoke(benchmark, tmp_path, monkeypatch):
    schedules = benchmark("schedules")
    rendered = _spy(monkeypatch, schedules, "render")
    output, figure = tmp_path / "schedules.md", tmp_path / "schedules.png"
    schedules.main(["--smoke", "--output", str(output), "--figure", str(figure)])
    (((_, runs), _, _),) = rendered
    constant, tau_constant, tau_follows = schedules.SCHEDULES
    expected = {name: [constant, tau_constant, tau_follows] for name in schedules.CONFIGS}
    assert {name: list(runs[name]) for name in runs} == {**expected, "adamw": [constant, tau_constant],
                                                         "lion": [constant, tau_constant]}  # fmt: skip
    rows = {row[0]: row[1:] for row in _table(output.read_text(), "| configuration |")}
    for name, by_schedule in runs.items():
        finals = {schedule: curve[-1] for schedule, (curve,) in by_schedule.items()}
        assert len(set(finals.values())) == len(finals), (name, finals)  # each schedule changed the run
        assert rows[name] == [f"{finals[s]:.4f}" if s in finals else "" for s in schedules.SCHEDULES]
    assert figure.stat().st_size > 0


@pytest.fixture
def geometry(monkeypatch):
    # `python -m benchmarks.geometry.experiments` imports it from the repository root.
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent))
    return importlib.import_module("benchmarks.geometry.experiments")


def test_geometry_lists_its_experiments_without_training(geometry, capsys):
    assert geometry.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(geometry.EXPERIMENTS)
    assert any(line.startswith("exp1 ") and " 8 runs " in line for line in listed)


def test_geometry_runs_have_unique_names_and_configs_the_package_accepts(geometry):
    from stacey_lightning import run

    for name, experiment in geometry.EXPERIMENTS.items():
        runs = experiment.runs()
        assert len({spec.name for spec in runs}) == len(runs), name
        for spec in runs:
            run.optimizer_choice(spec.optimizer, dict(spec.config))


def test_geometry_refuses_an_unknown_experiment(geometry, capsys):
    with pytest.raises(SystemExit):
        geometry.main(["--run", "exp99"])
    assert "invalid choice: 'exp99'" in capsys.readouterr().err


def test_spectral_coupling_smoke(benchmark, tmp_path):
    """Each row is the Muon-like anchor at its step and horizon (tau follows the horizon: the coupled run is
    another run), or torch's Muon at its lr, and its cell is that run's final value."""
    script = benchmark("spectral_coupling")
    output = tmp_path / "coupling.md"
    script.main(["--smoke", "--output", str(output)])
    rows = {row[0]: row for row in _table(output.read_text(), "| configuration |")}
    uncoupled, coupled = (rows[f"stacey muon-like step 0.001, tau_horizon {h}"] for h in ("inf", "1"))
    muon = rows["muon lr 0.003"]
    assert uncoupled[1] != coupled[1]  # the pull towards z changed the run
    config = script.stacey_config(1e-3, math.inf, "language")  # tau_horizon inf: tau = 0, Muon's special case
    assert (config["tau_horizon"], config["kinds"]["matrix"]["norm"], config["lr"]) == ("inf", "spectral", 1e-3)
    assert script.stacey_config(1e-3, 1.0, "language")["tau_horizon"] == 1.0
    # The ladder's rung with the rest at three times the matrices' step, and another beta2.
    rest = script.stacey_config(1e-3, math.inf, "language", rest=3.0, beta2=0.99)
    assert rest["lr"] == pytest.approx(3e-3) and rest["betas"] == pytest.approx([0.9, 0.99])
    assert 0.2 * rest["lr"] * rest["kinds"]["matrix"]["lr_scale"] == pytest.approx(1e-3)  # the matrices' RMS
    for row in (uncoupled, coupled, muon):
        assert float(row[2]) == float(row[1])  # one seed: the mean is the run's final value
        assert float(row[3]) == pytest.approx(float(row[1]) - float(muon[1]), abs=2e-4)


def test_stacked_maps_times_each_map_against_the_whole_and_torch(benchmark, tmp_path):
    script = benchmark("stacked_maps")
    output = tmp_path / "stacked.md"
    text = script.main(["--sizes", "8", "--models", "gru,lstm", "--threads", "1", "--repetitions", "1",
                        "--output", str(output)])  # fmt: skip
    assert output.read_text() == text
    steps = _table(text, "| model |")
    assert [row[0] for row in steps] == ["gru", "lstm"]
    assert all(float(cell.rstrip("x")) > 0 for row in steps for cell in row[1:])
    rows = _table(text, "| weight |")
    assert [row[1] for row in rows] == ["24 x 8", "32 x 8", "24 x 8"]  # attention's q, k, v, LSTM, GRU
    for row in rows:
        assert all(float(cell) > 0 for cell in row[2:6]) and all(float(cell.rstrip("x")) > 0 for cell in row[6:])
    # Each map's direction, batched or one at a time, is the same.
    c = torch.randn(24, 8)
    torch.testing.assert_close(script.FORMS["maps batched"](c, 3), script.FORMS["maps one at a time"](c, 3))


def test_newton_schulz_times_each_form_at_each_aspect(benchmark, tmp_path):
    script = benchmark("newton_schulz")
    output = tmp_path / "ns.md"
    text = script.main(["--rows", "8", "--aspects", "1,3", "--threads", "1", "--repetitions", "1",
                        "--output", str(output)])  # fmt: skip
    assert output.read_text() == text
    rows = _table(text, "| rows x cols |")
    assert [row[:2] for row in rows] == [["8 x 8", "1"], ["8 x 24", "3"]]
    for row in rows:
        assert all(float(cell) > 0 for cell in row[2:5]) and all(float(cell.rstrip("x")) > 0 for cell in row[5:])
    error = dict(part.rsplit(" ", 1) for part in text.split("singular values 1 to 1e-6): ")[1].strip().split(", "))
    assert float(error["gram"]) < 1e-3 < float(error["torch bf16"])
