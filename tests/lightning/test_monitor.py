import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import Logger
from regression import TRAINER_OPTIONS, Regression

import stacey_lightning.lightning.monitor as monitor_module
from stacey_lightning import StaceyMonitor
from stacey_lightning.lightning.monitor import dual_exponent, group_norm


class Capture(Logger):
    name, version = "capture", 0

    def __init__(self):
        super().__init__()
        self.logged = []

    def log_metrics(self, metrics, step=None):
        self.logged.append((step, dict(metrics)))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class Snapshot(pl.Callback):
    """Parameters and gradients around optimizer step 0, to check the monitor's values."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step == 0:
            self.groups = optimizer.param_groups
            self.before = [[param.detach().clone() for param in group["params"]] for group in self.groups]
            self.grads = [[param.grad.clone() for param in group["params"]] for group in self.groups]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            self.after = [[param.detach().clone() for param in group["params"]] for group in self.groups]


def _flat_norm(tensors, p):
    return torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors]), p).item()


def test_group_norm_is_the_norm_of_the_concatenation():
    tensors = [torch.randn(3, 4), torch.randn(5)]
    for p in (1.5, 2.0, 4.0, math.inf):
        assert group_norm(tensors, p).item() == pytest.approx(_flat_norm(tensors, p), rel=1e-5)
    assert dual_exponent(4.0) == pytest.approx(4 / 3) and dual_exponent(math.inf) == 1.0


def test_logs_geometry_per_group_on_logging_steps_only(monkeypatch):
    calls = []
    real_group_norm = monitor_module.group_norm
    monkeypatch.setattr(monitor_module, "group_norm", lambda tensors, p: calls.append(p) or real_group_norm(tensors, p))
    module = Regression(lr=0.05)
    module.set_stacey_config({"p": 3.0, "kinds": {"vector": {"p": math.inf}}})
    logger, monitor, snapshot = Capture(), StaceyMonitor(every_n_steps=3), Snapshot()
    options = {**TRAINER_OPTIONS, "logger": logger}
    pl.Trainer(max_epochs=2, callbacks=[monitor, snapshot], log_every_n_steps=1, **options).fit(module)

    logged = [(step, metrics) for step, metrics in logger.logged if "stacey/matrix/p" in metrics]
    assert [step for step, _ in logged] == [0, 3, 6]  # 8 optimizer steps
    assert len(calls) == 3 * 2 * 3  # logging steps x groups x norms: nothing computed on other steps
    first = logged[0][1]
    assert first["stacey/matrix/p"] == 3.0 and first["stacey/vector/p"] == math.inf
    for index, (name, p) in enumerate([("matrix", 3.0), ("vector", math.inf)]):
        steps = [after - before for after, before in zip(snapshot.after[index], snapshot.before[index])]
        assert first[f"stacey/{name}/step_norm"] == pytest.approx(_flat_norm(steps, p), rel=1e-4)
        assert first[f"stacey/{name}/grad_dual_norm"] == pytest.approx(
            _flat_norm(snapshot.grads[index], dual_exponent(p)), rel=1e-4
        )
        assert first[f"stacey/{name}/x_minus_z_norm"] > 0
    assert monitor.latest == logged[-1][1]


def test_a_group_in_adams_norm_is_measured_in_l2_and_logs_no_p():
    module = Regression(lr=0.05)
    module.set_stacey_config({"p": 3.0, "kinds": {"vector": {"norm": "adam"}}})
    logger, monitor, snapshot = Capture(), StaceyMonitor(every_n_steps=3), Snapshot()
    pl.Trainer(max_epochs=1, callbacks=[monitor, snapshot], log_every_n_steps=1,
               **{**TRAINER_OPTIONS, "logger": logger}).fit(module)  # fmt: skip
    first = next(metrics for _, metrics in logger.logged if "stacey/matrix/p" in metrics)
    assert "stacey/vector/p" not in first  # Adam's norm moves with v: no fixed p to show
    steps = [after - before for after, before in zip(snapshot.after[1], snapshot.before[1])]
    assert first["stacey/vector/step_norm"] == pytest.approx(_flat_norm(steps, 2.0), rel=1e-4)
    assert first["stacey/vector/grad_dual_norm"] == pytest.approx(_flat_norm(snapshot.grads[1], 2.0), rel=1e-4)


def test_needs_a_stacey_optimizer_and_a_valid_interval():
    class WithSGD(Regression):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(ValueError, match="StaceyMonitor needs a Stacey optimizer"):
        pl.Trainer(max_epochs=1, callbacks=[StaceyMonitor()], **TRAINER_OPTIONS).fit(WithSGD())
    with pytest.raises(ValueError, match="every_n_steps"):
        StaceyMonitor(every_n_steps=0)


def test_digits_example_shows_the_geometry_in_tensorboard(tmp_path):
    import sys
    from pathlib import Path

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
    from digits import main

    metrics = main(["--max-epochs", "1", "--output", str(tmp_path)])
    assert metrics["val_acc"] > 0.5
    events = EventAccumulator(str(tmp_path / "version_0"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train_loss",
        "val_loss",
        "val_acc",
        "stacey/matrix/p",
        "stacey/matrix/step_norm",
        "stacey/vector/x_minus_z_norm",
        "stacey/vector/grad_dual_norm",
    } <= tags
    assert [event.step for event in events.Scalars("stacey/matrix/step_norm")] == [0, 10, 20, 30, 40]
