"""The benchmark scripts run end to end with --smoke and write their Markdown tables."""

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmark(monkeypatch):
    # The scripts import their shared _report helper from their own folder, as `python benchmarks/x.py` does.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return lambda name: importlib.import_module(name)


def test_tuning_efficiency_smoke(benchmark, tmp_path):
    output = tmp_path / "tuning_efficiency.md"
    benchmark("tuning_efficiency").main(["--smoke", "--output", str(output)])
    text = output.read_text()
    for row in (
        "Grid: 2 p x 1 lr x 1 tau = 2 points",
        "| sampler seed |",
        "Fraction of the grid's training epochs needed",
        "| inf |",
        "Command: `python benchmarks/tuning_efficiency.py",
        "Machine: ",
    ):
        assert row in text


def test_quality_smoke(benchmark, tmp_path):
    output = tmp_path / "quality.md"
    benchmark("quality").main(["--smoke", "--output", str(output)])
    text = output.read_text()
    digits, textlm = text.split("## digits, 2 tuning trials")[1].split("## textlm, 2 tuning trials")
    for section, monitor in ((digits, "val_acc"), (textlm, "val_bpc")):
        assert f"| optimizer | final {monitor} (mean ± std) | tuned config |" in section
        for name in ("stacey", "adamw", "sgd", "lion"):
            assert f"\n| {name} | " in section
        assert "Stacey against the best baseline" in section
    assert " ± " in digits and "Command: `python benchmarks/quality.py --smoke" in text


def test_samplers_smoke(benchmark, tmp_path):
    output = tmp_path / "samplers.md"
    benchmark("samplers").main(["--smoke", "--output", str(output)])
    text = output.read_text()
    for row in (
        "## digits: best val_acc found",
        "## textlm: best val_bpc found",
        "| tpe | hyperband |",
        "| gp | hyperband |",
        "| cmaes | hyperband |",
        "| tpe | none |",
        "Command: `python benchmarks/samplers.py",
    ):
        assert row in text


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


def test_settled_smoke(benchmark, tmp_path):
    output = tmp_path / "settled.md"
    settled = benchmark("settled")
    settled.main(["--smoke", "--output", str(output)])
    text = output.read_text()
    assert "## digits: val_acc (higher is better), 4 epochs, 3 seeds per config" in text
    assert "| lion-like step 0.001 | " in text and "| mean of the last 2 epochs | " in text
    assert "The study's rule on the seed-0 curves" in text and "Command: `python benchmarks/settled.py --smoke" in text
    # Two configs on three seeds: seed 0 of the first against the mean final of its seeds 1 and 2.
    configs = [{"curves": [[0.0, 0.5], [0.0, 0.7], [0.0, 0.9]]}, {"curves": [[0.0, 0.6], [0.0, 0.6], [0.0, 0.6]]}]
    rms, bias = settled.estimates(configs, settled._final)
    assert bias == pytest.approx(0.0) and rms == pytest.approx((0.3**2 * 2 / 6) ** 0.5)
    assert settled.picks_best(configs, settled._final, maximize=True) == (2, 3)  # seed 0: 0.5 against 0.6
    # Minimized, the second config is best (0.6); by the mean of both epochs (0.25, 0.35, 0.45 against 0.3) on 2.
    assert settled.picks_best(configs, settled._tail_mean, maximize=False) == (2, 3)


def test_schedules_smoke(benchmark, tmp_path):
    output, figure = tmp_path / "schedules.md", tmp_path / "schedules.png"
    benchmark("schedules").main(["--smoke", "--output", str(output), "--figure", str(figure)])
    text = output.read_text()
    assert "| p 4, tau 1/T | " in text and "| adamw | " in text and "warmup_cosine, tau follows lr" in text
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
