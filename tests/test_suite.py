"""The workload suite (benchmarks/suite): its split, every workload's task, --list, the summary math, and the
driver end to end at smoke size, resumed from its workdir."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def repository_on_path(monkeypatch):
    # `python -m benchmarks.suite` runs from the repository root, which puts it on the import path.
    monkeypatch.syspath_prepend(str(ROOT))


def _workloads():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.suite.registry import WORKLOADS
    finally:
        sys.path.remove(str(ROOT))
    return WORKLOADS


def test_the_split_has_enough_workloads_and_architectures_on_both_sides():
    from benchmarks.suite.registry import DEV, VALIDATION, WORKLOADS, select

    dev, validation = select(DEV), select(VALIDATION)
    assert len(dev) >= 6 and len(validation) >= 4
    assert len(dev) + len(validation) == len(WORKLOADS) >= 10
    assert len({workload.name for workload in WORKLOADS}) == len(WORKLOADS)
    dev_kinds, validation_kinds = {w.architecture for w in dev}, {w.architecture for w in validation}
    assert len(dev_kinds | validation_kinds) >= 5
    assert len(dev_kinds & validation_kinds) >= 2  # some families on both sides ...
    assert dev_kinds - validation_kinds and validation_kinds - dev_kinds  # ... and each side has its own
    for workload in WORKLOADS:
        assert workload.direction in ("maximize", "minimize")
        assert workload.monitor.startswith("val_")
        assert workload.epochs >= 1 and 0 < workload.seconds <= 30
        assert workload.space in ("default", "language", "vision")


def test_select_names_unknown_workloads():
    from benchmarks.suite.registry import select

    assert [w.name for w in select("all", ["diabetes-mlp", "cancer-mlp"])] == ["cancer-mlp", "diabetes-mlp"]
    with pytest.raises(ValueError, match="Unknown workload.*diabetes-mlp"):
        select("dev", ["diabetes-mlp"])  # a validation workload is not in the dev split
    with pytest.raises(ValueError, match="Invalid split"):
        select("test")


@pytest.mark.parametrize("workload", _workloads(), ids=lambda workload: workload.name)
def test_every_workload_builds_in_the_task_form_and_logs_its_metric(workload):
    from benchmarks.suite.run import time_default_run
    from stacey_lightning import StaceyMixin

    make = workload.make()
    assert list(inspect.signature(make).parameters)[:2] == ["trial", "seed"]
    module, datamodule = make(seed=1, **workload.smoke_options)
    assert isinstance(module, StaceyMixin)
    again, _ = make(seed=1, **workload.smoke_options)  # the seed alone sets the weights
    for (name, weight), (_, other) in zip(module.state_dict().items(), again.state_dict().items()):
        assert torch.equal(weight, other), name
    datamodule.setup("fit")
    assert len(datamodule.train_dataloader()) >= 4  # the smoke run's 4 batches are there
    wall, cpu, final = time_default_run(workload, smoke=True)
    assert math.isfinite(final) and wall > 0 and cpu > 0


def test_the_full_sized_data_is_deterministic_and_split_apart():
    from benchmarks.suite.datasets import recall, signals, tables, text

    for load in (tables.breast_cancer, tables.diabetes, signals.mnist1d, recall.recall):
        (train_inputs, train_targets), (validation_inputs, _) = load()
        (again, again_targets), _ = load()
        assert torch.equal(train_inputs, again) and torch.equal(train_targets, again_targets)
        assert len(train_inputs) == len(train_targets) and len(train_inputs) > 3 * len(validation_inputs) > 0
    (inputs, targets), (validation, _) = text.byte_windows("dev", context=64, max_bytes=40_000)
    assert inputs.shape[1] == 64 and torch.equal(inputs[:, 1:], targets[:, :-1]) and len(validation) > 0
    dev_text, _ = text.byte_windows("dev", 64)
    validation_text, _ = text.byte_windows("validation", 64)
    assert not set(text.CORPORA["dev"]) & set(text.CORPORA["validation"])
    assert dev_text[0].shape != validation_text[0].shape
    # Recall: the queried key is among the pairs, and the answer is the value after it.
    sequences, answers = recall.recall(50)[0]
    for sequence, answer in zip(sequences.tolist(), answers.tolist()):
        keys, values = sequence[0:-1:2], sequence[1:-1:2]
        assert values[keys.index(sequence[-1])] - recall.KEYS == answer


def test_list_prints_one_workload_a_line_without_importing_torch():
    from benchmarks.suite.registry import WORKLOADS

    script = (
        "import sys; from benchmarks.suite.__main__ import main; main(['--list']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    printed = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = printed.stdout.splitlines()
    assert len(lines) == len(WORKLOADS)
    for line, workload in zip(lines, WORKLOADS):
        name, split, architecture, seconds = line.split()
        assert (name, split, architecture, float(seconds)) == (
            workload.name, workload.split, workload.architecture, workload.seconds,
        )  # fmt: skip


def test_list_takes_the_split():
    from benchmarks.suite.__main__ import main

    assert {line.split()[1] for line in main(["--list", "--split", "validation"]).splitlines()} == {"validation"}


def test_summary_on_a_hand_made_table():
    from benchmarks.suite.summary import peer_gap, ranks, relative_gap, scores

    table = {
        "accuracy": {"a": 0.90, "b": 0.898, "c": 0.80},  # best a; b 0.22% behind, c 11% behind
        "bpc": {"a": 2.00, "b": 1.98, "c": math.nan},  # best b; a 1.01% behind; c diverged
        "loss": {"a": 1.0, "b": 1.0, "c": 1.004},  # a and b tie; c 0.4% behind
    }
    directions = {"accuracy": "maximize", "bpc": "minimize", "loss": "minimize"}
    result = scores(table, directions, ["a", "b", "c"])
    assert result["a"].within == pytest.approx(2 / 3) and result["a"].mean_rank == pytest.approx((1 + 2 + 1.5) / 3)
    assert result["b"].within == 1.0 and result["b"].mean_rank == pytest.approx((2 + 1 + 1.5) / 3)
    assert result["c"].within == pytest.approx(1 / 3) and result["c"].mean_rank == 3.0
    assert relative_gap(2.00, 1.98, "minimize") == pytest.approx(0.02 / 1.98)
    assert relative_gap(math.nan, 1.98, "minimize") == math.inf
    assert ranks({"a": 1.0, "b": math.nan, "c": 1.0, "d": 0.5}, "minimize") == {"d": 1, "a": 2.5, "c": 2.5, "b": 4}
    assert peer_gap(table["accuracy"], "a", "maximize") == pytest.approx(0.002 / 0.898)  # ahead of b by this much
    assert peer_gap(table["accuracy"], "c", "maximize") == pytest.approx(-0.1 / 0.9)
    # An optimizer missing from a workload has no result there: last, and not within tolerance.
    missing = scores({"accuracy": {"a": 0.9}}, {"accuracy": "maximize"}, ["a", "z"])
    assert (missing["z"].within, missing["z"].mean_rank, missing["a"].mean_rank) == (0.0, 2.0, 1.0)


def test_run_smoke_writes_the_report_and_resumes_from_its_workdir(tmp_path, monkeypatch, capsys):
    from benchmarks.suite import run
    from benchmarks.suite.__main__ import main

    workdir, output = tmp_path / "work", tmp_path / "suite.md"
    common = ["--run", "--smoke", "--workloads", "cancer-mlp", "--workdir", str(workdir), "--output", str(output)]
    main([*common, "--optimizers", "stacey,stacey-find"])
    text = output.read_text()
    assert "## dev: the workloads that defaults are chosen on" in text and "## validation" not in text
    assert "| optimizer | workloads within 0.5% of the best | mean rank (1 = best) |" in text
    assert "### cancer-mlp (mlp), K = 2: val_acc, higher is better" in text
    folder = workdir / "smoke-study-seed-0" / "cancer-mlp"
    for name, where in (("stacey", "budget-2/stacey"), ("stacey-find", "stacey-find")):
        stored = json.loads((folder / where / run.RESULT).read_text())
        assert stored["seeds"] == 1 and len(stored["outcome"]["finals"]) == 1
        final = stored["outcome"]["finals"][0]
        assert math.isfinite(final) and f"\n| {name} | {final:.4f} |" in text
    assert "finder: " in text and "SMOKE RUN" in text

    # Started again, it trains nothing it has a result for; an optimizer that fails is reported, not fatal.
    def fails(workload, optimizer, *arguments):
        if optimizer != "adamw":
            raise AssertionError(f"{optimizer} trained again")
        raise ValueError("adamw cannot train this")

    monkeypatch.setattr(run, "_measure", fails)
    capsys.readouterr()
    main([*common, "--optimizers", "stacey,stacey-find,adamw"])
    assert "done before" in capsys.readouterr().out
    text = output.read_text()
    assert "| adamw | failed: ValueError: adamw cannot train this |" in text
    assert "\n| stacey-find | " in text and "(1 of 1)" in text
    assert not (folder / "budget-2" / "adamw" / run.RESULT).exists()  # tried again next time


def test_cli_refuses_bad_arguments(capsys):
    from benchmarks.suite.__main__ import main

    for argv, message in (
        (["--run", "--budgets", "0"], "--budgets"),
        (["--run", "--workloads", "nope"], "--workloads"),
        (["--run", "--optimizers", "adamw,adamw"], "--optimizers"),
        (["--run", "--measure"], "--measure goes with --list"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


def test_spectral_step_trains_each_step_horizon_and_embedding_scale_it_is_given(capsys):
    """One line per (step, horizon, rest's scale, beta2, rest's norm, seed), each a run of its own: the coupled
    run, the larger step, the rest's larger step, the other beta2 and the sign-like rest end elsewhere than the
    Muon-like point."""
    from benchmarks.suite import spectral_step

    torch_threads = torch.get_num_threads()
    try:
        spectral_step.main(["--workloads", "cancer-mlp", "--steps", "1e-3,3e-3", "--horizons", "inf,0.5"])
        spectral_step.main(
            ["--workloads", "cancer-mlp", "--steps", "1e-3", "--rest-scales", "3", "--beta2s", "0.95,0.99"]
        )
        spectral_step.main(["--workloads", "cancer-mlp", "--steps", "1e-3", "--rest-norms", "lp"])
    finally:
        torch.set_num_threads(torch_threads)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cancer-mlp muon-like")]
    finals = {line.split(": val_loss ")[0]: float(line.split(": val_loss ")[1]) for line in lines}
    assert list(finals) == [
        *(f"cancer-mlp muon-like step {step} tau_horizon {horizon} embedding x1 rest norm adam seed 0"
          for step in ("0.001", "0.003") for horizon in ("inf", "0.5")),
        *(f"cancer-mlp muon-like step 0.001 tau_horizon inf embedding x1 rest x3 beta2 {beta2} rest norm adam seed 0"
          for beta2 in ("0.95", "0.99")),
        "cancer-mlp muon-like step 0.001 tau_horizon inf embedding x1 rest norm lp seed 0",
    ]  # fmt: skip
    assert len(set(finals.values())) == 7  # every step, horizon, rest's step, beta2 and rest's norm changed the run


def test_spectral_step_trains_muon_with_its_own_rest_a_sign_like_rest_and_coupled_matrices(capsys):
    """torch's Muon at its lr with AdamW on the rest (``muon``), the same Muon with the rest stepped sign-like,
    and with its matrices stepped by Stacey with a pull towards z: three runs, three ends."""
    from benchmarks.suite import spectral_step

    torch_threads = torch.get_num_threads()
    try:
        spectral_step.main(["--workloads", "cancer-mlp", "--steps", "", "--muon-lrs", "3e-3",
                            "--sign-rest-steps", "1e-2", "--coupled-horizons", "1"])  # fmt: skip
    finally:
        torch.set_num_threads(torch_threads)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cancer-mlp ")]
    finals = {line.split(": val_loss ")[0]: float(line.split(": val_loss ")[1]) for line in lines}
    assert list(finals) == [
        "cancer-mlp muon lr 0.003 seed 0",
        "cancer-mlp muon lr 0.003 sign rest 0.01 seed 0",
        "cancer-mlp muon lr 0.003 matrices by stacey tau_horizon 1 seed 0",
    ]
    assert len(set(finals.values())) == 3


def test_ns_forms_retrains_one_config_under_each_form_it_names(tmp_path, capsys, monkeypatch):
    """Each form's runs see the step's levers set as the form says, and only they: after the block the step
    reads the module's own again."""
    import stacey_lightning.compare as compare_module
    from benchmarks.suite import ns_forms
    from stacey_lightning.optim import _spectral

    seen = []

    def compare(*args, **kwargs):
        seen.append((_spectral.GRAM_ASPECT, _spectral.ns_precision(torch.zeros(2, 2))))
        return types.SimpleNamespace(runs=[types.SimpleNamespace(final_metric=0.5)])

    monkeypatch.setattr(compare_module, "compare", compare)
    config = tmp_path / "best.yaml"
    config.write_text("kinds: {matrix: {norm: spectral}}\n")
    torch_threads = torch.get_num_threads()
    try:
        forms = "default,direct,float64,bfloat16"
        ns_forms.main(["--workloads", "cancer-mlp", "--config", str(config), "--forms", forms, "--seeds", "1"])
    finally:
        torch.set_num_threads(torch_threads)
    aspect = _spectral.GRAM_ASPECT
    assert seen == [(aspect, torch.float32), (math.inf, torch.float32), (math.inf, torch.float64),
                    (aspect, torch.bfloat16)]  # fmt: skip
    assert _spectral.ns_precision(torch.zeros(2, 2)) == torch.float32
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"cancer-mlp {form}: val_acc 0.5000 (0.5000)" for form in ("default", "direct", "float64", "bfloat16")
    ]
    with pytest.raises(SystemExit):
        ns_forms.main(["--workloads", "cancer-mlp", "--config", str(config), "--forms", "half"])
    assert "--forms: unknown half" in capsys.readouterr().err
