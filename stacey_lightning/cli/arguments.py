"""The commands' arguments: one parser per command, and the checks argparse runs on each value."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from search_spaces import PRESETS
from stacey_lightning.attributes import (
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_STORAGE_OUTAGE_S,
    PRUNERS,
    SAMPLERS,
)
from stacey_lightning.baselines import BASELINES, DEFAULT_OPTIMIZERS
from stacey_lightning.tasks import BUILTIN_TASKS

__all__ = ["UsageError", "tune_parser", "compare_parser", "report_parser", "find_parser", "is_config", "key_value"]

_TASK_HELP = f"built-in task ({', '.join(BUILTIN_TASKS)}) or module:callable (imported from the current folder)"


class UsageError(ValueError):
    """A mistake on the command line found after parsing."""


def _devices(text: str) -> int | str:
    """--devices: a count ("2"), "auto", or a list such as "0,1" (as Lightning accepts them)."""
    return int(text) if text.isdigit() else text


def key_value(text: str, flag: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{flag} expects KEY=VALUE, got {text!r}")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "a syntax error"
        raise argparse.ArgumentTypeError(f"{flag} {text!r}: the value is not valid YAML ({problem})") from None
    # YAML 1.1 reads "1e-3" (no dot) as a string; a number is what such an option means.
    if isinstance(parsed, str):
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key, parsed


def _task_option(text: str) -> tuple[str, Any]:
    return key_value(text, "--task-option")


def _trainer_option(text: str) -> tuple[str, Any]:
    return key_value(text, "--trainer")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def is_config(text: str) -> bool:
    return text.endswith((".yaml", ".yml"))


def _lightning_config(text: str) -> str:
    if not text.endswith((".yaml", ".yml")):
        raise argparse.ArgumentTypeError(f"expected a LightningCLI config file (.yaml), got {text!r}")
    return text


def _add_task_arguments(parser: argparse.ArgumentParser, *, geometry: bool = True) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help=_TASK_HELP)
    which.add_argument(
        "--lightning-config",
        dest="task",
        type=_lightning_config,
        metavar="CONFIG.yaml",
        help="a LightningCLI config (python main.py fit --print_config > config.yaml; model and data as "
        "class_path and init_args) instead of --task; its classes are imported from the current folder",
    )
    parser.add_argument(
        "--lightning-script",
        default=None,
        metavar="MAIN.py",
        help="the LightningCLI script of --lightning-config, read without running its main block: the "
        "classes and arguments of its LightningCLI(Model, Data, trainer_defaults=..., ...) call; needed when "
        "the config names no class_path",
    )
    parser.add_argument(
        "--task-option",
        type=_task_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the task's make(), value read as YAML; repeatable",
    )
    parser.add_argument(
        "--max-epochs",
        type=_positive,
        default=None,
        help="epochs per run (default: a --lightning-config's trainer.max_epochs, else 10)",
    )
    parser.add_argument(
        "--monitor",
        "--metric",
        dest="monitor",
        default=None,
        help="logged metric to optimise or compare (default: the task's); under torchrun, "
        "spell it --metric (torchrun takes --monitor for its own --monitor-interval)",
    )
    parser.add_argument(
        "--direction",
        choices=("maximize", "minimize"),
        default=None,
        help="whether --monitor is better higher or lower (default: the task's)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the sampler, of seed_everything and of the task's make(seed=...) (default: %(default)s)",
    )
    parser.add_argument("--accelerator", default=None, help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument("--devices", type=_devices, default=None, help="Lightning devices per run")
    parser.add_argument(
        "--trainer",
        type=_trainer_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another lightning.Trainer argument, value read as YAML (limit_train_batches=10, "
        "precision=bf16-mixed, gradient_clip_val=1.0); repeatable",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show what Lightning says on every run (device banners, tips, 'Trainer.fit stopped') every time, "
        "and warnings as Python shows them; by default each distinct message is shown at most once",
    )
    if not geometry:  # stacey-find logs nothing to TensorBoard
        return
    parser.add_argument(
        "--geometry",
        action="store_true",
        help="log Stacey's geometry per parameter group (StaceyMonitor: p, step, ||x - z||) to TensorBoard",
    )


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        default=None,
        help=f"Stacey's search space: a preset ({', '.join(PRESETS)}) or a YAML path; default: the task's",
    )
    parser.add_argument(
        "--sampler",
        default=None,
        help=f"{', '.join(SAMPLERS)}, or a class path such as optuna.samplers.NSGAIISampler "
        f"(default: {DEFAULT_SAMPLER})",
    )
    parser.add_argument(
        "--pruner",
        default=None,
        help=f"{', '.join(PRUNERS)}, or a class path such as optuna.pruners.PatientPruner (default: {DEFAULT_PRUNER})",
    )
    parser.add_argument(
        "--storage",
        default=None,
        help="database URL (postgresql://user:password@host/db, sqlite:///file.db) or "
        "journal:PATH; default: an SQLite file in --output",
    )
    parser.add_argument(
        "--storage-outage",
        type=float,
        default=DEFAULT_STORAGE_OUTAGE_S,
        metavar="SECONDS",
        help="how long to wait for an unreachable database before stopping; the same command resumes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--no-confirm",
        dest="confirm",
        action="store_false",
        help="name the best single trial, without training the top candidates again on other seeds first",
    )
    parser.add_argument(
        "--no-anchors",
        dest="anchors",
        action="store_false",
        help="start sampling at once, without the anchor points (Lion-like, SGD-like, the space's centre)",
    )


def tune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacey-tune",
        description="Tune Stacey's p, lr, alpha and tau with Optuna on a Lightning task. Re-running the same "
        "command resumes the study until --n-trials trials have finished.",
    )
    _add_task_arguments(parser)
    parser.add_argument(
        "--n-trials",
        type=_positive,
        default=None,
        help="completed or pruned trials the study should have; failed ones do not count (default: 20, "
        "or as many as --budget pays for)",
    )
    parser.add_argument(
        "--budget",
        type=_positive,
        default=None,
        metavar="EPOCHS",
        help="epochs all trials may train together (pruned and failed trials count what they trained); the "
        "study stops when another run of --max-epochs no longer fits. With --n-trials, whichever ends first",
    )
    _add_study_arguments(parser)
    parser.add_argument("--study-name", default=None, help="default: the task's name")
    parser.add_argument(
        "--start-from",
        default=None,
        metavar="CONFIG.yaml",
        help="a Stacey config (stacey-find's or a study's best.yaml) to train as the first trial of a new study",
    )
    parser.add_argument("--output", default="stacey_runs", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--workers", type=_positive, default=1, help="worker processes on this machine (default: %(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument(
        "--strategy",
        default=None,
        help="Lightning strategy (ddp, ddp_spawn, ...), or fsdp2: ModelParallelStrategy with every "
        "device in data parallelism (the module shards itself in configure_model)",
    )
    return parser


def compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacey-compare",
        description="Train a task with Stacey and baseline optimizers over several seeds; write TensorBoard "
        "runs, a figure and tables. With --tune-trials N, first tune every optimizer with the same "
        "N trials, then compare each at its best.",
    )
    _add_task_arguments(parser)
    parser.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_OPTIMIZERS),
        help="comma-separated: stacey, " + ", ".join(BASELINES) + " or optimizer class paths "
        "such as torch.optim.RAdam (default: %(default)s)",
    )
    parser.add_argument(
        "--seeds", type=_positive, default=3, help="number of seeds: --seed, --seed + 1, ... (default: %(default)s)"
    )
    parser.add_argument(
        "--config",
        help="Stacey config YAML, for example the tuner's best.yaml (its task section is passed to the task's make)",
    )
    parser.add_argument("--output", default="stacey-compare", help="output directory (default: %(default)s)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTIMIZER.KEY=VALUE",
        help="override an option, repeatable: adamw.lr=1e-3, stacey.p=3, sgd.nesterov=true",
    )
    parser.add_argument(
        "--tune-trials",
        type=_positive,
        default=None,
        metavar="N",
        help="tune every optimizer with N trials first (Stacey on --space, baselines on "
        "--baseline-space), then compare them at their best (default: no tuning)",
    )
    parser.add_argument(
        "--tune-budget",
        type=_positive,
        default=None,
        metavar="EPOCHS",
        help="tune every optimizer with the same budget of EPOCHS epochs in all first (as stacey-tune --budget; "
        "with --tune-trials, whichever ends first), then compare them at their best",
    )
    parser.add_argument(
        "--baseline-space",
        default=None,
        help="YAML file of the baselines' search spaces (default: the baselines preset)",
    )
    _add_study_arguments(parser)
    return parser


def report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacey-report", description="Export Optuna's plots (HTML and PNG) and a Markdown summary of one study."
    )
    parser.add_argument(
        "storage",
        metavar="STORAGE_URL",
        help="storage as stacey-tune takes it: sqlite:///stacey_runs/optuna.db, "
        "postgresql://user:password@host/db or journal:PATH",
    )
    parser.add_argument(
        "--study-name",
        "--study",
        dest="study_name",
        help="study name (needed when the storage holds several); --study is the old spelling",
    )
    parser.add_argument("--output", default="stacey-report", help="output directory (default: %(default)s)")
    return parser


def _p_candidates(text: str) -> list[float]:
    """--p "3,4,8,inf": the candidate geometries (checked by the finder: each > 1)."""
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 3,4,8,inf, got {text!r}") from None


def find_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacey-find",
        description="Suggest Stacey's p, lr and tau for a task within about 1.5 training runs of optimizer steps "
        "(range tests per p from the same initial weights, then short confirmation runs), like Lightning's "
        "lr_find: writes --output/best.yaml (for --config or --start-from) and a figure.",
    )
    _add_task_arguments(parser, geometry=False)
    parser.add_argument(
        "--p", dest="p_candidates", type=_p_candidates, default=None, metavar="P,P,...",
        help="candidate geometries, each > 1 (default: 3,4,8,inf)",
    )  # fmt: skip
    parser.add_argument(
        "--runs", type=float, default=1.5, help="budget in training runs of --max-epochs (default: %(default)s)"
    )
    parser.add_argument("--output", default="stacey-find", help="output directory (default: %(default)s)")
    return parser
