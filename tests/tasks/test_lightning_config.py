"""A LightningCLI project tuned as it is: ``stacey-tune --lightning-config config.yaml``, then the project's own
``LightningCLI`` fit with ``--config config.yaml --config out/best_cli.yaml`` replays the best trial."""

from __future__ import annotations

import math
import sys
import textwrap
import uuid

import optuna
import pytest
import yaml
from cli_sources import DATA_MODULE_SOURCE
from lightning.pytorch.cli import LightningCLI

from stacey_lightning import Stacey, cli
from stacey_lightning.study.spec import study_spec
from stacey_lightning.tasks import resolve_task

MODULE = (
    """
import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from stacey_lightning import StaceyMixin


class Plain(pl.LightningModule):
    def __init__(self, hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))
        self.log("val_acc", (self.net(x).argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class WithMixin(StaceyMixin, pl.LightningModule):
    training_step = Plain.training_step
    validation_step = Plain.validation_step

    def __init__(self, hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 3))


class Manual(Plain):
    def __init__(self, hidden: int = 16):
        super().__init__(hidden)
        self.automatic_optimization = False


"""
    + DATA_MODULE_SOURCE
)

SPACE = {
    "p": {"distribution": "p_exponent", "low": 2.0, "high": math.inf},
    "lr": {"distribution": "coordinate_step", "low": 1e-3, "high": 3e-2},
    "alpha": {"distribution": "log_uniform", "low": 0.1, "high": 10.0, "times": "lr"},
    "tau_horizon": {"distribution": "horizon", "low": 0.3, "high": math.inf},
    "weight_decay": {"distribution": "log_uniform", "low": 1e-5, "high": 1e-3, "times": "1/lr"},
    "tau_follows_lr": True,
    "model": {"hidden": {"distribution": "int_log_uniform", "low": 8, "high": 32}},
}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A LightningCLI project in tmp_path (its own module name, so projects do not share sys.modules);
    returns a function writing config.yaml for one of its module classes."""
    name = f"lcproject_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(model: str = "WithMixin", trainer: dict | None = None, **sections) -> str:
        config = {
            "seed_everything": 7,
            "model": {"class_path": f"{name}.{model}", "init_args": {"hidden": 16}},
            "data": {"class_path": f"{name}.Data", "init_args": {"batch_size": 16}},
            "trainer": {"accelerator": "cpu", "max_epochs": 2, "gradient_clip_val": 1.0, **(trainer or {})},
            **sections,
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return "config.yaml"

    write.module = name
    yield write
    sys.modules.pop(name, None)


CHECKPOINT = {
    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
    "init_args": {"monitor": "val_acc", "mode": "max"},
}


def _fit(*configs: str) -> LightningCLI:
    """The project's own fit, as ``python main.py fit --config ... --config ...`` runs it (main.py: LightningCLI())."""
    args = ["fit"]
    for config in configs:
        args += ["--config", config]
    return LightningCLI(args=args + ["--trainer.enable_progress_bar", "false"])


def _best(output: str) -> optuna.trial.FrozenTrial:
    summaries = optuna.get_all_study_summaries(f"sqlite:///{output}/optuna.db")
    return optuna.load_study(study_name=summaries[0].study_name, storage=f"sqlite:///{output}/optuna.db").best_trial


@pytest.mark.parametrize("model", ["WithMixin", "Plain"])
def test_tune_then_the_projects_own_fit_replays_the_best_trial(project, model):
    config = project(model, trainer={"max_epochs": 1, "callbacks": [CHECKPOINT]})
    status = cli.tune_main(
        ["--lightning-config", config, "--space", "space.yaml", "--n-trials", "4", "--output", "out"]
    )
    assert status == 0
    best = _best("out")
    assert best.params["model.hidden"] == yaml.safe_load(open("out/best.yaml"))["task"]["model.hidden"]
    written = yaml.safe_load(open("out/best_cli.yaml"))
    assert written["seed_everything"] == 0 and written["trainer"]["max_epochs"] == 1  # --seed, the file's epochs
    assert written["model"]["init_args"] == {"hidden": best.params["model.hidden"]}

    fitted = _fit(config, "out/best_cli.yaml")
    optimizer = fitted.trainer.optimizers[0]
    assert isinstance(optimizer, Stacey)
    assert fitted.model.net[0].out_features == best.params["model.hidden"]
    value = float(fitted.trainer.callback_metrics["val_acc"])
    if model == "WithMixin":
        assert [group["kind"] for group in optimizer.param_groups] == ["matrix", "vector"]
        assert value == best.value  # exactly: the same seed, epochs, groups by kind and random state
    else:
        # LightningCLI's optimizer: one group, the tuned values; the header says what it leaves out.
        assert (
            len(optimizer.param_groups) == 1
            and optimizer.param_groups[0]["p"] == written["optimizer"]["init_args"]["p"]
        )
        header = open("out/best_cli.yaml").read().split("\nseed_everything")[0]
        assert "Plain has no StaceyMixin" in header and "weight decay applies to vectors too" in header
        assert "optimizer: null" in header
        # The one-line change the header gives: no optimizer section, and the fit replays the trial exactly.
        written["optimizer"] = None
        with open("out/as_trials.yaml", "w") as stream:
            yaml.safe_dump(written, stream)
        fitted = _fit(config, "out/as_trials.yaml")
        assert [group["kind"] for group in fitted.trainer.optimizers[0].param_groups] == ["matrix", "vector"]
        assert float(fitted.trainer.callback_metrics["val_acc"]) == best.value


def _tune_plain_replayed_whole(project, space: dict, n_trials: int) -> tuple[str, dict, str]:
    """Tune the Plain project (no mixin) in ``space``; its best_cli.yaml must leave the optimizer to StaceyReplay.
    Returns the config path, the written file and its header."""
    config = project("Plain", trainer={"max_epochs": 1})
    with open("space.yaml", "w") as stream:
        yaml.safe_dump(space, stream)
    arguments = ["--lightning-config", config, "--space", "space.yaml", "--n-trials", str(n_trials), "--output", "out"]
    assert cli.tune_main(arguments) == 0
    written = yaml.safe_load(open("out/best_cli.yaml"))
    assert written["optimizer"] is None
    return config, written, open("out/best_cli.yaml").read().split("\nseed_everything")[0]


def test_a_winner_with_kinds_in_another_norm_is_replayed_whole_for_a_module_without_the_mixin(project):
    """Muon-like trials (spectral matrices, the rest in Adam's norm) cannot be one param group: best_cli.yaml
    leaves the optimizer to StaceyReplay, says why, and the project's own fit gives the trial's value exactly."""
    space = {**SPACE, "norm": "adam", "kinds": {"matrix": {"norm": "spectral"}}}
    config, written, header = _tune_plain_replayed_whole(project, space, n_trials=2)
    assert (
        "Plain has no StaceyMixin, and the best trial steps its matrix kinds in the spectral norm, the rest in the adam"
        in header
    )
    fitted = _fit(config, "out/best_cli.yaml")
    groups = fitted.trainer.optimizers[0].param_groups
    assert {group["name"]: group["norm"] for group in groups} == {
        "head": "adam",
        "matrix": "spectral",
        "vector": "adam",
    }
    replay = written["trainer"]["callbacks"][-1]["init_args"]  # the winner's value (the study's ranking)
    assert float(fitted.trainer.callback_metrics[replay["monitor"]]) == replay["expected"]


def test_a_winner_evaluated_at_its_average_is_replayed_whole_for_a_module_without_the_mixin(project):
    """LightningCLI's optimizer is never switched to the average: the file leaves it to StaceyReplay (whose
    adopted mixin switches it where Lightning evaluates), says why, and the fit gives the trial's value."""
    config, written, header = _tune_plain_replayed_whole(project, {**SPACE, "average_horizon": 0.1}, n_trials=1)
    assert "the best trial is evaluated at an average of its weights (average_horizon 0.1)" in header
    fitted = _fit(config, "out/best_cli.yaml")
    assert all(group["average_decay"] is not None for group in fitted.trainer.optimizers[0].param_groups)
    replay = written["trainer"]["callbacks"][-1]["init_args"]
    assert float(fitted.trainer.callback_metrics[replay["monitor"]]) == replay["expected"]


def test_stacey_compare_rebuilds_the_best_trials_module(project):
    from stacey_lightning.compare import compare

    config = project("WithMixin")
    assert (
        cli.tune_main(["--lightning-config", config, "--space", "space.yaml", "--n-trials", "2", "--output", "out"])
        == 0
    )
    best = _best("out")
    result = compare(config, ["stacey"], [0], config="out/best.yaml", output_dir="compared")
    assert result.runs[0].final_metric == best.value  # the same module arguments, seed and epochs


def test_the_file_sets_trainer_epochs_and_monitor_under_the_tools_own(project):
    early = {
        "class_path": "lightning.pytorch.callbacks.EarlyStopping",
        "init_args": {"monitor": "val_acc", "mode": "max"},
    }
    config = project("Plain", trainer={"max_epochs": 3, "accumulate_grad_batches": 2, "callbacks": [early],
                                      "logger": False})  # fmt: skip
    task = resolve_task(config)
    assert (task.name, task.monitor, task.direction, task.max_epochs) == ("Plain", "val_acc", "maximize", 3)
    assert {
        "accelerator": "cpu",
        "gradient_clip_val": 1.0,
        "accumulate_grad_batches": 2,
    }.items() <= task.trainer_kwargs.items()
    assert "logger" not in task.trainer_kwargs and "max_epochs" not in task.trainer_kwargs
    first, second = list(task.trainer_kwargs["callbacks"]), list(task.trainer_kwargs["callbacks"])
    assert type(first[0]).__name__ == "EarlyStopping" and first[0] is not second[0]  # built afresh for each run
    spec = study_spec(config, trainer_kwargs={"accelerator": "auto"}, output_dir="out")
    assert spec.max_epochs == 3 and spec.trainer_kwargs["accelerator"] == "auto"  # the command line's wins
    assert study_spec(config, max_epochs=1, output_dir="out").max_epochs == 1
    assert resolve_task(project("Plain")).monitor == "val_loss"  # no ModelCheckpoint or EarlyStopping


def test_a_module_with_manual_optimization_fails_its_trial_in_one_line(project):
    config = project("Manual")
    module, _ = resolve_task(config).make(None)
    from stacey_lightning import run

    with pytest.raises(ValueError, match="Manual uses manual optimization"):
        run.use_optimizer(module, run.optimizer_choice("stacey"))


BAD = {
    "no class_path": ({"model": {"hidden": 3}}, "config.yaml: model.class_path: missing"),
    "unknown init argument": (
        {"model": {"class_path": "{module}.Plain", "init_args": {"hiden": 3}}},
        "config.yaml: model.init_args.hiden: not an argument of {module}.Plain (its arguments: hidden, dropout)",
    ),
    "trainer key Lightning rejects": (
        {"model": {"class_path": "{module}.Plain"}, "trainer": {"max_epoch": 3}},
        "config.yaml: trainer.max_epoch: not an argument of lightning.pytorch.Trainer",
    ),
    "trainer value Lightning rejects": (
        {"model": {"class_path": "{module}.Plain"}, "trainer": {"precision": "bogus"}},
        "config.yaml: trainer.precision: 'bogus' is not accepted",
    ),
    "data without class_path": (
        {"model": {"class_path": "{module}.Plain"}, "data": {"batch_size": 3}},
        "config.yaml: data.class_path: missing",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_file_is_one_line_naming_file_and_key_before_any_trial(project, tmp_path, capsys, case):
    content, message = BAD[case]
    text = yaml.safe_dump(content).replace("{module}", project.module)
    (tmp_path / "config.yaml").write_text(text)
    assert cli.tune_main(["--lightning-config", "config.yaml", "--n-trials", "1", "--output", "out"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("stacey-tune: error: " + message.replace("{module}", project.module))
    assert not (tmp_path / "out").exists()  # nothing opened, nothing trained


def test_the_model_section_of_a_space_names_arguments_the_module_has(project, tmp_path):
    config = project("Plain")
    space = {**SPACE, "model": {"width": {"distribution": "int_uniform", "low": 2, "high": 4}}}
    with pytest.raises(
        ValueError, match=r"model\.width: not an argument of .*Plain \(its arguments: hidden, dropout\)"
    ):
        study_spec(config, space=space, output_dir="out")
    with pytest.raises(ValueError, match="a model section is for a task given as a LightningCLI config"):
        study_spec("digits", space=SPACE, output_dir="out")


def test_a_trials_module_arguments_come_from_the_trial_or_a_replay_of_it(project):
    task = resolve_task(project("Plain"))
    module, datamodule = task.make(optuna.trial.FixedTrial({"model.hidden": 24}))
    assert module.net[0].out_features == 24 and datamodule.batch_size == 16
    module, _ = task.make(None)
    assert module.net[0].out_features == 16


def test_without_the_mixin_tau_horizon_and_the_schedule_are_written_for_lightning_clis_optimizer(project, tmp_path):
    from stacey_lightning.tasks.lightning_config import load_lightning_config

    config = load_lightning_config(project("Plain", trainer={"accumulate_grad_batches": 2}))
    tuned = {
        "p": 3.0,
        "lr": 0.01,
        "tau_horizon": 2.0,
        "kinds": {"vector": {"p": 2.0}},
        "schedule": {"name": "warmup_cosine"},
    }
    path = config.write_best_cli(
        tmp_path, stacey_config=tuned, params={"model.hidden": 12}, value=0.5, number=3, seed=1, max_epochs=2,
        monitor="val_acc",
    )  # fmt: skip
    text = path.read_text()
    written = yaml.safe_load(text)
    steps = 2 * 16 // 2  # 2 epochs of 16 batches, 2 batches a step
    assert written["optimizer"]["init_args"]["tau"] == 1.0 / (2.0 * steps)
    assert f"T = {steps} optimizer steps" in text and "per-kind settings" in text and "warmup_cosine" in text
    assert written["model"]["init_args"] == {"hidden": 12} and written["seed_everything"] == 1


def test_the_command_line_takes_a_lightning_config_instead_of_a_task(capsys):
    assert cli.tune_parser().parse_args(["--lightning-config", "config.yaml"]).task == "config.yaml"
    for argv in (["--lightning-config", "config.txt"], ["--task", "digits", "--lightning-config", "config.yaml"], []):
        with pytest.raises(SystemExit) as exit:
            cli.tune_parser().parse_args(argv)
        assert exit.value.code == 2


def test_without_jsonargparse_the_file_is_refused_in_one_line_that_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    from stacey_lightning.tasks import lightning_config

    config = tmp_path / "config.yaml"
    config.write_text("model: {class_path: x.Y}\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "jsonargparse" else real(name))
    with pytest.raises(ValueError, match=r"config.yaml: reading a LightningCLI config needs jsonargparse.*\[cli\]"):
        lightning_config.load_lightning_config(config)
