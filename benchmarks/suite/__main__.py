"""``python -m benchmarks.suite``: list the workloads, time them, or run the equal-budget study on a split.

    --list                  one workload a line: name, split, architecture, seconds per run (recorded)
    --list --measure        the same with the seconds measured here (one default Stacey run each, CPU time)
    --run                   tune every optimizer at each budget, retrain on seeds, write the report

Torch, Lightning and Optuna are imported after parsing, and ``--list`` imports none of them.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from benchmarks.suite.registry import SPLITS, select

RESULTS = Path(__file__).resolve().parents[1] / "results" / "suite.md"
TITLE = "Workload suite: optimizers tuned at equal budgets, on the dev and validation halves"


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    from benchmarks.suite.run import default_optimizers

    parser = argparse.ArgumentParser(prog="python -m benchmarks.suite", description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="one workload a line: name split architecture seconds")
    action.add_argument("--run", action="store_true", help="tune, retrain and report (see --budgets, --seeds)")
    # fmt: off
    parser.add_argument("--measure", action="store_true",
                        help="with --list: time one default Stacey run of each workload here instead (CPU seconds; "
                        "the wall-clock time and the load go to stderr)")
    parser.add_argument("--split", choices=(*SPLITS, "all"), default=None,
                        help="which half (default: all for --list, dev for --run)")
    parser.add_argument("--workloads", default=None, help="comma-separated names: only these")
    parser.add_argument("--budgets", default="4,8", help="tuning budgets, in full runs per optimizer (default: 4,8)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds each winner is retrained on (default: 3)")
    parser.add_argument("--optimizers", default=",".join(default_optimizers()),
                        help="comma-separated: stacey, stacey-find, baseline names, class paths (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the tuning studies (default: 0)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep studies and results here; a run started again resumes (default: a temporary one)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="Markdown report (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: tiny models, 1 epoch of 4 batches, a budget of 2 runs, 1 seed")
    # fmt: on
    arguments = parser.parse_args(argv)
    if arguments.measure and not arguments.list:
        parser.error("--measure goes with --list")
    arguments.split = arguments.split or ("all" if arguments.list else "dev")
    names = _names(arguments.workloads)
    try:
        arguments.workloads = select(arguments.split, names)
    except ValueError as error:
        parser.error(f"--workloads: {error}")
    arguments.optimizers = _names(arguments.optimizers) or []
    if len(set(arguments.optimizers)) != len(arguments.optimizers) or not arguments.optimizers:
        parser.error(f"--optimizers: give each at least once and at most once, got {arguments.optimizers}")
    try:
        arguments.budgets = [int(value) for value in _names(arguments.budgets) or []]
    except ValueError:
        parser.error(f"--budgets: comma-separated whole numbers of runs, got {arguments.budgets!r}")
    if not arguments.budgets or min(arguments.budgets) < 1:
        parser.error(f"--budgets: at least one budget, each >= 1, got {arguments.budgets}")
    if arguments.smoke:
        arguments.budgets, arguments.seeds = [2], 1
    return arguments


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def list_workloads(arguments: argparse.Namespace) -> str:
    """The ``--list`` lines; with ``--measure``, each workload timed here first (minutes)."""
    lines = []
    for workload in arguments.workloads:
        seconds = workload.seconds
        if arguments.measure:
            import torch

            from benchmarks.suite.run import load_average, time_default_run

            torch.set_num_threads(arguments.threads)
            wall, seconds, final = time_default_run(workload)
            print(f"# {workload.name}: {workload.monitor} {final:.4f}, {wall:.1f} s wall-clock, load average "
                  f"{load_average():.1f}", file=sys.stderr, flush=True)  # fmt: skip
        lines.append(f"{workload.name:<26} {workload.split:<10} {workload.architecture:<11} {seconds:6.1f}")
        if arguments.measure:
            print(lines[-1], flush=True)
    return "\n".join(lines)


def run_suite(arguments: argparse.Namespace, argv: list[str]) -> str:
    """Measure every chosen workload and write the report; return its text."""
    import tempfile

    import torch

    from benchmarks._report import SMOKE_NOTE, write_report
    from benchmarks.suite.report import render
    from benchmarks.suite.run import load_average, measure_workload
    from stacey_lightning.tuner.outputs import quiet_libraries

    torch.set_num_threads(arguments.threads)
    say = lambda line: print(f"[suite] {line}", flush=True)  # noqa: E731
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="suite-") as scratch, quiet_libraries():
        workdir = arguments.workdir or Path(scratch)
        measured = {}
        for workload in arguments.workloads:
            measured[workload.name] = measure_workload(
                workload, arguments.optimizers, arguments.budgets, seeds=arguments.seeds, workdir=workdir,
                smoke=arguments.smoke, tune_seed=arguments.seed, progress=say,
            )  # fmt: skip
            loads.append(load_average())
    body = (
        f"Load (1-minute average) at the start and after each workload: {', '.join(f'{v:.1f}' for v in loads)}.\n\n"
        + render(measured, arguments.workloads, arguments.optimizers, arguments.budgets, arguments.seeds)
        + (f"\n\n{SMOKE_NOTE}" if arguments.smoke else "")
    )
    command = shlex.join(["python", "-m", "benchmarks.suite", *argv])
    return write_report(arguments.output, TITLE, command, body)


def main(argv: list[str] | None = None) -> str:
    """Parse ``argv`` (default: the command line), then list or run; print and return the output."""
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = parse_arguments(argv)
    if arguments.list:
        text = list_workloads(arguments)
        if not arguments.measure:
            print(text)
        return text
    text = run_suite(arguments, argv)
    print(text)
    return text


if __name__ == "__main__":
    main()
