"""Command-line entry points: ``stacey-tune``, ``stacey-compare``, ``stacey-report``, and
``python -m stacey_lightning tune|compare|report``.

``SUBCOMMANDS`` maps each ``python -m stacey_lightning`` subcommand to its ``main(argv)`` function;
other tools register theirs there.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

import yaml

from stacey_lightning.compare import compare_main
from stacey_lightning.report import report_main

__all__ = ["tune_main", "tune_parser", "SUBCOMMANDS", "main"]


def _devices(text: str) -> int | str:
    """--devices: a count ("2"), "auto", or a list such as "0,1" (as Lightning accepts them)."""
    return int(text) if text.isdigit() else text


def _task_option(text: str) -> tuple[str, object]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"--task-option expects KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def tune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stacey-tune",
        description="Tune Stacey's p, lr, alpha and tau with Optuna on a Lightning task. Re-running the same "
                    "command resumes the study until --n-trials trials have finished.")
    parser.add_argument("--task", required=True,
                        help="built-in task (digits, textlm, cifar10) or package.module:callable")
    parser.add_argument("--n-trials", type=int, default=20, help="total trials of the study (default 20)")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs per trial (default 10)")
    parser.add_argument("--space", default=None,
                        help="search-space preset (default, vision, language) or YAML path; default: the task's")
    parser.add_argument("--storage", default=None,
                        help="database URL (postgresql://user:password@host/db, sqlite:///file.db) or "
                             "journal:PATH; default: sqlite file in --output")
    parser.add_argument("--study-name", default=None, help="default: the task's name")
    parser.add_argument("--output", default="stacey_runs", help="output directory (default stacey_runs)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument("--accelerator", default=None, help="Lightning accelerator (cpu, gpu, auto)")
    parser.add_argument("--devices", type=_devices, default=None, help="Lightning devices per trial")
    parser.add_argument("--strategy", default=None, help="Lightning strategy (ddp, ddp_spawn, ...)")
    parser.add_argument("--monitor", default=None, help="logged metric to optimise; default: the task's")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default=None,
                        help="default: the task's")
    parser.add_argument("--seed", type=int, default=0, help="sampler and training seed (default 0)")
    parser.add_argument("--task-option", type=_task_option, action="append", default=[], metavar="KEY=VALUE",
                        help="keyword argument for the task's make(), value read as YAML; repeatable")
    return parser


def tune_main(argv: Sequence[str] | None = None) -> int:
    """``stacey-tune``: parse ``argv`` (default sys.argv[1:]), run the study, return the exit status."""
    from stacey_lightning.tuner import TooManyFailures, tune

    args = tune_parser().parse_args(argv)
    trainer_kwargs = {name: getattr(args, name) for name in ("accelerator", "devices", "strategy")
                      if getattr(args, name) is not None}
    try:
        tune(args.task, space=args.space, n_trials=args.n_trials, timeout=args.timeout, storage=args.storage,
             study_name=args.study_name, monitor=args.monitor, direction=args.direction, max_epochs=args.max_epochs,
             trainer_kwargs=trainer_kwargs, workers=args.workers, output_dir=args.output, seed=args.seed,
             task_options=dict(args.task_option))
    except (ValueError, TypeError, TooManyFailures) as error:
        print(f"stacey-tune: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, (ValueError, TypeError)) else 1
    except KeyboardInterrupt:
        return 130  # 128 + SIGINT; tune() has kept the finished trials and said how to resume
    return 0


SUBCOMMANDS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "tune": tune_main, "compare": compare_main, "report": report_main}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stacey_lightning SUBCOMMAND ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        print(f"usage: python -m stacey_lightning {{{','.join(SUBCOMMANDS)}}} ...", file=sys.stderr)
        return 2
    return SUBCOMMANDS[argv[0]](argv[1:])
