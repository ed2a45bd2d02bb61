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
import sys
from collections.abc import Callable, Sequence

from stacey_lightning.cli.arguments import compare_parser, find_parser, is_config, report_parser, tune_parser
from stacey_lightning.cli.commands import (
    compare_command,
    find_command,
    import_from_current_folder,
    report_command,
    tune_command,
)
from stacey_lightning.cli.screen import screen

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


def _command(
    prog: str, parser: Callable[[], argparse.ArgumentParser], work: Callable[[argparse.Namespace], int]
) -> Callable[[Sequence[str] | None], int]:
    def main(argv: Sequence[str] | None = None) -> int:
        made = parser()
        args = made.parse_args(argv)
        if getattr(args, "lightning_script", None) is not None:
            if not is_config(args.task):
                made.error("--lightning-script: goes with --lightning-config CONFIG.yaml, not --task")
            from stacey_lightning.tasks.lightning_script import LightningFiles

            args.task = LightningFiles(args.task, args.lightning_script)
        import_from_current_folder()
        return _run(prog, work, args)

    main.__name__ = f"{prog.replace('-', '_')}_main"
    main.__doc__ = f"``{prog}``: parse ``argv`` (default sys.argv[1:]), run, return the exit status."
    return main


def _run(prog: str, work: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from stacey_lightning.execution.outage import StorageUnavailable
    from stacey_lightning.execution.supervisor import TooManyFailures
    from stacey_lightning.tuner.tuning import NoTrialSucceeded

    try:
        with screen(getattr(args, "verbose", False)):
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


tune_main = _command("stacey-tune", tune_parser, tune_command)
compare_main = _command("stacey-compare", compare_parser, compare_command)
report_main = _command("stacey-report", report_parser, report_command)
find_main = _command("stacey-find", find_parser, find_command)

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
