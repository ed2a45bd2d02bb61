"""Every command: ``stacey-tune``, ``stacey-compare``, ``stacey-find``, ``stacey-report``, and
``python -m stacey_lightning``.

Parsing imports nothing heavy: torch, Lightning, Optuna and matplotlib are imported inside each
command, after its arguments are read, so ``--help`` answers at once. A user's mistake (a bad flag,
value, file, task option or storage) is one line on stderr and exit status 2; Ctrl-C is status 130
after the finished work is kept; a study that cannot go on (every trial failed, or its database out of
reach for longer than --storage-outage) is status 1.

The screen holds the command's own lines: what Lightning says again on every run (its device banners,
tips, "`Trainer.fit` stopped") and each warning appear at most once per command; --verbose shows them all.

Like ``python -m``, every command imports ``--task module:callable`` from the current folder first.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import yaml

from search_spaces import PRESETS
from stacey_lightning.baselines import BASELINES, DEFAULT_OPTIMIZERS
from stacey_lightning.tasks import BUILTIN_TASKS
from stacey_lightning.tuner.attributes import (
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    DEFAULT_STORAGE_OUTAGE_S,
    PRUNERS,
    SAMPLERS,
)

__all__ = [
    "main",
    "tune_main",
    "compare_main",
    "report_main",
    "find_main",
    "tune_parser",
    "compare_parser",
    "report_parser",
    "find_parser",
    "COMMANDS",
]

_TASK_HELP = f"built-in task ({', '.join(BUILTIN_TASKS)}) or module:callable (imported from the current folder)"
# Where Lightning says what it says again for every Trainer and fit: rank_zero_info (of Lightning and of
# Fabric: "GPU available", "TPU available", "HPU available", "You are using a CUDA device", the tips,
# "`Trainer.fit` stopped"), a GPU's "LOCAL_RANK ... CUDA_VISIBLE_DEVICES", the process group's
# "Initializing distributed", and model summaries where --trainer enable_model_summary=true asks for them.
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.distributed",
    "lightning.pytorch.callbacks.model_summary",
)


class UsageError(ValueError):
    """A mistake on the command line found after parsing."""


def _devices(text: str) -> int | str:
    """--devices: a count ("2"), "auto", or a list such as "0,1" (as Lightning accepts them)."""
    return int(text) if text.isdigit() else text


def _key_value(text: str, flag: str) -> tuple[str, Any]:
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
    return _key_value(text, "--task-option")


def _trainer_option(text: str) -> tuple[str, Any]:
    return _key_value(text, "--trainer")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _is_config(text: str) -> bool:
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
        type=int,
        default=0,
        metavar="N",
        help="tune every optimizer with N trials first (Stacey on --space, baselines on "
        "--baseline-space), then compare them at their best (default: 0, no tuning)",
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


def _trainer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """--trainer KEY=VALUE settings, then --accelerator, --devices and --strategy where given."""
    kwargs = dict(args.trainer)
    names = ("accelerator", "devices", "strategy")
    kwargs.update({name: getattr(args, name) for name in names if getattr(args, name, None) is not None})
    return kwargs


def _import_from_current_folder() -> None:
    """Put the current folder first on the import path, as ``python -m`` does, for ``--task module:callable``."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _tune(args: argparse.Namespace) -> int:
    from stacey_lightning.tuner.spec import study_spec
    from stacey_lightning.tuner.study import run_study

    spec = study_spec(
        args.task,
        space=args.space,
        n_trials=args.n_trials,
        budget=args.budget,
        max_epochs=args.max_epochs,
        storage=args.storage,
        study_name=args.study_name,
        monitor=args.monitor,
        direction=args.direction,
        output_dir=args.output,
        timeout=args.timeout,
        sampler=args.sampler,
        pruner=args.pruner,
        trainer_kwargs=_trainer_kwargs(args),
        seed=args.seed,
        task_options=dict(args.task_option),
        workers=args.workers,
        geometry=args.geometry,
        anchors=args.anchors,
        start_from=args.start_from,
        confirm=args.confirm,
        storage_outage_s=args.storage_outage,
    )
    run_study(spec)
    return 0


def _parse_setting(text: str, optimizers: Sequence[str]) -> tuple[str, str, Any]:
    """ "adamw.lr=1e-3" -> ("adamw", "lr", 0.001); the value is read as YAML (numbers, lists, inf)."""
    target, equals, _ = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not (equals and dot and name and key):
        raise UsageError(f"--set {text!r}: expected OPTIMIZER.KEY=VALUE, for example adamw.lr=1e-3")
    if name not in optimizers:
        raise UsageError(f"--set {text!r}: {name!r} is not among --optimizers {','.join(optimizers)}")
    return name, key, _key_value(text, "--set")[1]


def _settings(texts: Sequence[str], optimizers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """--set OPTIMIZER.KEY=VALUE lines as {optimizer: {key: value}}."""
    settings: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, key, value = _parse_setting(text, optimizers)
        settings.setdefault(name, {})[key] = value
    return settings


def _compare(args: argparse.Namespace) -> int:
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    settings = _settings(args.set, optimizers)
    from stacey_lightning.compare import compare

    # --seed S is the first of the --seeds seeds: with --seeds 1 a run is the tuning trial with --seed S.
    seeds = list(range(args.seed, args.seed + args.seeds))
    result = compare(
        args.task,
        optimizers,
        seeds,
        max_epochs=args.max_epochs,
        config=args.config,
        monitor=args.monitor,
        direction=args.direction,
        output_dir=args.output,
        trainer_kwargs=_trainer_kwargs(args),
        optimizer_options=settings,
        task_options=dict(args.task_option),
        progress=print,
        geometry=args.geometry,
        tune_trials=args.tune_trials,
        tune_budget=args.tune_budget,
        space=args.space,
        baseline_space=args.baseline_space,
        storage=args.storage,
        sampler=args.sampler,
        pruner=args.pruner,
        tune_seed=args.seed,
        anchors=args.anchors,
        confirm=args.confirm,
        storage_outage_s=args.storage_outage,
    )
    with open(result.markdown, encoding="utf-8") as stream:
        print("\n" + stream.read())
    print(f"figure: {result.figure}\ntables: {result.markdown}, {result.csv}, {result.runs_csv}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(args.output, 'tensorboard')}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from stacey_lightning.report import report
    from stacey_lightning.tuner.storage import dashboard_hint

    written = report(args.storage, args.study_name, args.output)
    with open(written["summary"], encoding="utf-8") as stream:
        print(stream.read())
    print("wrote: " + ", ".join(written.values()))
    print(f"interactive: {dashboard_hint(args.storage)}  (pip install optuna-dashboard)")
    return 0


def _find(args: argparse.Namespace) -> int:
    from stacey_lightning.finder import P_CANDIDATES, find_for_task
    from stacey_lightning.tuner.outputs import quiet_libraries

    with quiet_libraries():
        result, written = find_for_task(
            args.task,
            max_epochs=args.max_epochs,
            task_options=dict(args.task_option),
            seed=args.seed,
            monitor=args.monitor,
            trainer_kwargs=_trainer_kwargs(args),
            p_candidates=args.p_candidates or P_CANDIDATES,
            runs=args.runs,
            direction=args.direction,
            output_dir=args.output,
            progress=lambda line: print(line, flush=True),
        )
    print("\n" + result.table())
    print("wrote: " + ", ".join(str(path) for path in written.values()))
    print(f"train it: stacey-compare --config {written['best.yaml']} ...; tune from it: stacey-tune --start-from "
          f"{written['best.yaml']} ...")  # fmt: skip
    return 0


def _command(
    prog: str, parser: Callable[[], argparse.ArgumentParser], work: Callable[[argparse.Namespace], int]
) -> Callable[[Sequence[str] | None], int]:
    def main(argv: Sequence[str] | None = None) -> int:
        made = parser()
        args = made.parse_args(argv)
        if getattr(args, "lightning_script", None) is not None:
            if not _is_config(args.task):
                made.error("--lightning-script: goes with --lightning-config CONFIG.yaml, not --task")
            from stacey_lightning.tasks.lightning_script import LightningFiles

            args.task = LightningFiles(args.task, args.lightning_script)
        _import_from_current_folder()
        return _run(prog, work, args)

    main.__name__ = f"{prog.replace('-', '_')}_main"
    main.__doc__ = f"``{prog}``: parse ``argv`` (default sys.argv[1:]), run, return the exit status."
    return main


def _run(prog: str, work: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from stacey_lightning.tuner.outage import StorageUnavailable
    from stacey_lightning.tuner.study import NoTrialSucceeded
    from stacey_lightning.tuner.workers import TooManyFailures

    try:
        with _screen(getattr(args, "verbose", False)):
            return work(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (TooManyFailures, NoTrialSucceeded, StorageUnavailable) as error:
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130  # 128 + SIGINT; what finished is kept, and the tool has said how to resume


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


class _OnceEach(logging.Filter):
    """Lets each distinct message through once: as a filter on loggers, and as ``warnings.showwarning`` in
    front of ``show``, the one in use before (Python's own record of what it has shown is cleared whenever
    a library's ``catch_warnings`` ends, which would show a warning again on every run)."""

    def __init__(self, show: Callable) -> None:
        super().__init__()
        self.show = show
        self.shown: set[str] = set()

    def first(self, message: str) -> bool:
        if message in self.shown:
            return False
        self.shown.add(message)
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        return self.first(record.getMessage())

    def showwarning(self, message: Any, category: type, filename: str, lineno: int, file=None, line=None) -> None:
        if self.first(f"{category.__name__}: {message}"):
            self.show(message, category, filename, lineno, file=file, line=line)


@contextlib.contextmanager
def _screen(verbose: bool) -> Iterator[None]:
    """Lightning's messages (``_LIGHTNING_LOGGERS``) and warnings once each for the command's duration, or
    with ``verbose`` every time, even where a study quiets Lightning's loggers (``quiet_libraries``)."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    if verbose:
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.INFO)  # their own level, which the level set on their parents does not cut
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
        return
    with warnings.catch_warnings():  # gives back the showwarning in use
        once = _OnceEach(warnings.showwarning)
        warnings.showwarning = once.showwarning
        for logger in loggers:
            logger.addFilter(once)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(once)


tune_main = _command("stacey-tune", tune_parser, _tune)
compare_main = _command("stacey-compare", compare_parser, _compare)
report_main = _command("stacey-report", report_parser, _report)
find_main = _command("stacey-find", find_parser, _find)

# python -m stacey_lightning COMMAND: (main function, one-line description)
COMMANDS: dict[str, tuple[Callable[[Sequence[str] | None], int], str]] = {
    "tune": (tune_main, "tune Stacey's p, lr, alpha and tau on a task with Optuna (as stacey-tune)"),
    "compare": (compare_main, "compare Stacey with AdamW, SGD and Lion on a task, tuned or not (as stacey-compare)"),
    "report": (report_main, "plots and a summary of one study (as stacey-report)"),
    "find": (find_main, "suggest Stacey's p, lr and tau in about 1.5 training runs (as stacey-find)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stacey_lightning COMMAND ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m stacey_lightning",
        description="Stacey, accelerated l_p steepest descent, for PyTorch Lightning: tune its geometry p, "
        "compare it with other optimizers, report on studies. 'COMMAND --help' tells more.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, description) in COMMANDS.items():
        commands.add_parser(name, help=description, add_help=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        try:
            parser.parse_args(argv[:1])  # prints --help, or the usage and what is wrong
        except SystemExit as exit:
            return int(exit.code or 0)
    return COMMANDS[argv[0]][0](argv[1:])
