"""Smoke tests of the built-in tasks textlm and cifar10: tiny sizes, a few steps each, offline."""

from __future__ import annotations

import importlib.util
import math
import sysconfig
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning.tasks import resolve_task
from stacey_lightning.tasks.cifar10 import CIFAR10_FILES, make_cifar10
from stacey_lightning.tasks.textlm import STDLIB_FILES, load_stdlib_text, make_textlm, split_text

# A tiny text model and corpus: a fit of a few steps takes about a second on CPU.
TINY_TEXTLM = dict(context=16, batch_size=4, max_chars=4000, width=32, depth=1, heads=2, foreach=True)


def _trainer(**limits) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **limits,
    )


def test_textlm_split_is_deterministic_and_disjoint():
    training, validation = load_stdlib_text(max_chars=4000)
    again_training, again_validation = load_stdlib_text(max_chars=4000)
    assert torch.equal(training, again_training) and torch.equal(validation, again_validation)

    # Each file is cut once: training is its head, validation its tail, and together they are the file.
    per_file = 4000 // len(STDLIB_FILES)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    offset_training = offset_validation = 0
    for name in STDLIB_FILES:
        text = (stdlib / name).read_bytes()[:per_file]
        head, tail = split_text(text)
        assert head + tail == text
        assert len(tail) == int(len(text) * 0.1) > 0
        assert bytes(training[offset_training : offset_training + len(head)]) == head
        assert bytes(validation[offset_validation : offset_validation + len(tail)]) == tail
        offset_training += len(head)
        offset_validation += len(tail)
    assert (offset_training, offset_validation) == (len(training), len(validation))


def test_textlm_batches_and_logits_have_the_documented_shapes():
    module, datamodule = make_textlm(**TINY_TEXTLM)
    datamodule.setup("fit")
    inputs, targets = next(iter(datamodule.train_dataloader()))
    assert inputs.shape == targets.shape == (4, 16) and inputs.dtype == torch.int64
    assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets are the next characters
    assert module(inputs).shape == (4, 16, 256)
    large, _ = make_textlm(size="large")
    assert large(inputs).shape == (4, 16, 256)


def test_textlm_logs_contracted_metrics_and_bpc_is_nats_over_ln2():
    module, datamodule = make_textlm(**TINY_TEXTLM)
    trainer = _trainer(limit_train_batches=3, limit_val_batches=3)
    trainer.fit(module, datamodule)
    metrics = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_bpc"} <= set(metrics)

    # Recompute the validation loss by hand: mean cross-entropy over every validation character seen.
    module.eval()
    total_nats, characters = 0.0, 0
    with torch.no_grad():
        for index, (inputs, targets) in enumerate(datamodule.val_dataloader()):
            if index == 3:
                break
            total_nats += F.cross_entropy(module(inputs).flatten(0, 1), targets.flatten(), reduction="sum").item()
            characters += targets.numel()
    assert metrics["val_loss"].item() == pytest.approx(total_nats / characters, rel=1e-5)
    assert metrics["val_bpc"].item() == pytest.approx(total_nats / characters / math.log(2), rel=1e-5)


def test_textlm_seed_fixes_the_weights_and_bad_options_are_named():
    first, _ = make_textlm(**TINY_TEXTLM)
    second, _ = make_textlm(**TINY_TEXTLM)
    other, _ = make_textlm(**TINY_TEXTLM, seed=1)
    assert torch.equal(first.head.weight, second.head.weight)
    assert not torch.equal(first.head.weight, other.head.weight)
    assert resolve_task("textlm").make is make_textlm
    with pytest.raises(ValueError, match="Unknown textlm option.*widht"):
        make_textlm(widht=64)
    with pytest.raises(ValueError, match="Invalid size: 'huge'"):
        make_textlm(size="huge")


def test_cifar10_smoke_mode_trains_and_logs_contracted_metrics(tmp_path, monkeypatch):
    module, datamodule = make_cifar10(data_dir=tmp_path, smoke=True, batch_size=4, num_workers=0, foreach=True)
    # The 32x32 adaptation: 3x3 stride-1 stem, no max pooling, 10 classes.
    stem = module.network.conv1
    assert (stem.kernel_size, stem.stride) == ((3, 3), (1, 1))
    assert isinstance(module.network.maxpool, nn.Identity)
    assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 10)

    trainer = _trainer(limit_train_batches=2, limit_val_batches=1)
    trainer.fit(module, datamodule)
    metrics = trainer.callback_metrics
    assert {"train_loss", "val_loss", "val_acc"} <= set(metrics)
    # The contract on a batch whose answers are known: val_loss is the mean cross-entropy in nats, val_acc the
    # fraction classified right, here 3 of 4 (a mean of the per-class rates would be 1/2).
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    logits[:, 0] = 10.0  # every image classified as 0
    labels = torch.tensor([0, 0, 0, 1])
    monkeypatch.setattr(module, "forward", lambda images: logits)
    known = DataLoader(TensorDataset(torch.zeros(4, 3, 32, 32), labels), batch_size=4)
    (validated,) = trainer.validate(module, dataloaders=known, verbose=False)
    assert validated["val_acc"] == 0.75
    assert validated["val_loss"] == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert not any(tmp_path.iterdir())  # smoke mode neither reads nor downloads anything


def test_cifar10_missing_data_says_what_to_do(tmp_path):
    _, datamodule = make_cifar10(data_dir=tmp_path)
    with pytest.raises(FileNotFoundError) as missing:
        datamodule.prepare_data()
    message = str(missing.value)
    assert str(tmp_path) in message and "no cifar-10-batches-py folder" in message
    assert "--task-option download=true" in message and "data_dir" in message

    # A partial copy: the message lists exactly the files that are missing.
    for name in CIFAR10_FILES[:-1]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    with pytest.raises(FileNotFoundError, match=r"missing cifar-10-batches-py/test_batch\)"):
        datamodule.setup("fit")
    with pytest.raises(ValueError, match="Unknown cifar10 option.*width"):
        make_cifar10(width=3)


def _run_example(name: str, argv: list[str]) -> dict[str, float]:
    """Run examples/<name>.py's main(argv), as a user would from the repository root."""
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    specification = importlib.util.spec_from_file_location(f"example_{name}", path)
    example = importlib.util.module_from_spec(specification)
    specification.loader.exec_module(example)
    return example.main(argv)


def test_examples_train_and_write_tensorboard_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    returned = {
        "textlm": _run_example("textlm", "--max-epochs 1 --max-chars 2000 --context 16 --batch-size 16".split()
                               + ["--output", str(tmp_path / "textlm")]),
        "cifar10": _run_example("cifar10", "--max-epochs 1 --smoke --batch-size 8 --num-workers 0".split()
                                + ["--output", str(tmp_path / "cifar10")]),
    }  # fmt: skip
    # The metric each example prints and returns is the one its TensorBoard logs hold.
    for name, metric in (("textlm", "val_bpc"), ("cifar10", "val_acc")):
        (events_file,) = (tmp_path / name).rglob("events.out.tfevents.*")
        events = EventAccumulator(str(events_file.parent))
        events.Reload()
        assert events.Scalars(metric)[-1].value == pytest.approx(returned[name][metric], rel=1e-6), name
