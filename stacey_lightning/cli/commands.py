"""What each command does with its parsed arguments: build the work, run it, print where the results are."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from stacey_lightning.cli.arguments import UsageError, key_value

__all__ = ["tune_command", "compare_command", "report_command", "find_command", "import_from_current_folder"]


def _trainer_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """--trainer KEY=VALUE settings, then --accelerator, --devices and --strategy where given."""
    kwargs = dict(args.trainer)
    names = ("accelerator", "devices", "strategy")
    kwargs.update({name: getattr(args, name) for name in names if getattr(args, name, None) is not None})
    return kwargs


def import_from_current_folder() -> None:
    """Put the current folder first on the import path, as ``python -m`` does, for ``--task module:callable``."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


# The flags whose dest is not the name of the study setting they give (every other dest that names one of
# study_spec's arguments is that setting).
_SETTING_OF_FLAG = {"output": "output_dir", "task_option": "task_options", "storage_outage": "storage_outage_s"}


def _study_settings(args: argparse.Namespace, renamed: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The parsed flags that are study settings, by ``study_spec``'s names (``renamed``: a command's own
    flags for them; None drops a flag), with --trainer, --accelerator, --devices and --strategy as one."""
    from dataclasses import fields

    from stacey_lightning.study.spec import PER_PROCESS, StudySpec

    names = {field.name for field in fields(StudySpec)} - PER_PROCESS - {"task"}  # study_spec's keywords
    table = {**_SETTING_OF_FLAG, **(renamed or {})}
    settings = {table.get(dest, dest): value for dest, value in vars(args).items() if table.get(dest, dest) in names}
    settings["task_options"] = dict(args.task_option)
    settings["trainer_kwargs"] = _trainer_kwargs(args)
    return settings


def tune_command(args: argparse.Namespace) -> int:
    from stacey_lightning.study.spec import study_spec
    from stacey_lightning.tuner.tuning import run_study

    run_study(study_spec(args.task, **_study_settings(args)))
    return 0


def _parse_setting(text: str, optimizers: Sequence[str]) -> tuple[str, str, Any]:
    """ "adamw.lr=1e-3" -> ("adamw", "lr", 0.001); the value is read as YAML (numbers, lists, inf)."""
    target, equals, _ = text.partition("=")
    name, dot, key = target.rpartition(".")
    if not (equals and dot and name and key):
        raise UsageError(f"--set {text!r}: expected OPTIMIZER.KEY=VALUE, for example adamw.lr=1e-3")
    if name not in optimizers:
        raise UsageError(f"--set {text!r}: {name!r} is not among --optimizers {','.join(optimizers)}")
    return name, key, key_value(text, "--set")[1]


def _settings(texts: Sequence[str], optimizers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """--set OPTIMIZER.KEY=VALUE lines as {optimizer: {key: value}}."""
    settings: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, key, value = _parse_setting(text, optimizers)
        settings.setdefault(name, {})[key] = value
    return settings


def compare_command(args: argparse.Namespace) -> int:
    optimizers = [name.strip() for name in args.optimizers.split(",") if name.strip()]
    settings = _settings(args.set, optimizers)
    from stacey_lightning.compare import compare

    # --seed S is the first of the --seeds seeds: with --seeds 1 a run is the tuning trial with --seed S.
    seeds = list(range(args.seed, args.seed + args.seeds))
    # Compare's own output folder; --tune-trials and --tune-budget are the study's n_trials and budget, and
    # --seed its seed as well as the runs' first.
    renamed = {"output": None, "tune_trials": "n_trials", "tune_budget": "budget"}
    result = compare(
        args.task,
        optimizers,
        seeds,
        config=args.config,
        optimizer_options=settings,
        output_dir=args.output,
        progress=print,
        baseline_space=args.baseline_space,
        **_study_settings(args, renamed),
    )
    with open(result.markdown, encoding="utf-8") as stream:
        print("\n" + stream.read())
    print(f"figure: {result.figure}\ntables: {result.markdown}, {result.csv}, {result.runs_csv}")
    print(f"TensorBoard: tensorboard --logdir {os.path.join(args.output, 'tensorboard')}")
    return 0


def report_command(args: argparse.Namespace) -> int:
    from stacey_lightning.execution.storage import dashboard_hint
    from stacey_lightning.report import report

    written = report(args.storage, args.study_name, args.output)
    with open(written["summary"], encoding="utf-8") as stream:
        print(stream.read())
    print("wrote: " + ", ".join(written.values()))
    print(f"interactive: {dashboard_hint(args.storage)}  (pip install optuna-dashboard)")
    return 0


def find_command(args: argparse.Namespace) -> int:
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
