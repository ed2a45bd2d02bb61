"""What both benchmark scripts print and write: the machine they ran on and a Markdown report."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "machine", "command_line", "write_report", "run_benchmark", "add_threads_argument", "add_workdir_argument",
    "task_list", "interleaved_times", "add_timing_arguments", "SMOKE_NOTE",
]  # fmt: skip

SMOKE_NOTE = "SMOKE RUN: a tiny budget that only checks the script; the numbers mean nothing."


def machine() -> str:
    """One line: cores, CPU model (from /proc/cpuinfo where there is one), torch version, GPU if any."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} cores (nproc), CPU {model}, {gpu}, torch {torch.__version__} "
        f"({torch.get_num_threads()} thread{'s' if torch.get_num_threads() > 1 else ''}), "
        f"Python {platform.python_version()}"
    )


def command_line(script: str, argv: list[str]) -> str:
    """The command that reproduces a run, from the repository root: ``python benchmarks/<script> ARGS``."""
    return shlex.join(["python", f"benchmarks/{script}", *argv])


def write_report(path: str | os.PathLike, title: str, command: str, body: str) -> str:
    """Write ``body`` under a header with the command, machine and date; return the whole text."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = f"# {title}\n\nCommand: `{command}`\n\nMachine: {machine()}\n\nDate: {date}\n\n{body.rstrip()}\n"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def run_benchmark(
    script: str,
    title: str,
    argv: list[str] | None,
    parse: Callable[[list[str]], Any],
    measure: Callable[[Any, Path], Any],
    render: Callable[[Any, Any], str],
) -> str:
    """A benchmark's ``main``: parse ``argv`` (default: the command line), use ``arguments.threads`` torch
    threads, ``measure(arguments, workdir)`` in ``arguments.workdir`` where the script has one and it is
    set (kept, so that a killed run resumes its studies) or else in a temporary folder, then print the
    report and write it to ``arguments.output``; return it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    arguments = parse(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(arguments.threads)
    try:
        if getattr(arguments, "workdir", None) is not None:
            arguments.workdir.mkdir(parents=True, exist_ok=True)
            result = measure(arguments, arguments.workdir)
        else:
            with tempfile.TemporaryDirectory(prefix=Path(script).stem + "-") as workdir:
                result = measure(arguments, Path(workdir))
        body = render(arguments, result) + (f"\n\n{SMOKE_NOTE}" if arguments.smoke else "")
        text = write_report(arguments.output, title, command_line(script, argv), body)
    finally:
        torch.set_num_threads(threads)  # in-process callers (the tests) get their setting back
    print(text)
    return text


def interleaved_times(
    calls: Mapping[Any, Callable[[], object]], threads: Sequence[int], repetitions: int
) -> dict[tuple, list[float]]:
    """Seconds per call, ``{(thread count, key): [seconds, ...]}``, of each of ``calls`` at each thread count: a
    warm-up round, then ``repetitions`` rounds that each make every call once, so that the machine's noise hits all
    alike. Torch's thread count is given back afterwards."""
    before = torch.get_num_threads()
    times: dict[tuple, list[float]] = {}
    try:
        for repetition in range(repetitions + 1):
            for count in threads:
                torch.set_num_threads(count)
                for key, call in calls.items():
                    start = time.perf_counter()
                    call()
                    if repetition:
                        times.setdefault((count, key), []).append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return times


def add_timing_arguments(parser: Any, output: Path) -> None:
    """The options of a timing script (``interleaved_times``): ``--threads`` (thread counts, default 1,2: a kernel
    level at one thread can be behind at two), ``--repetitions`` (default 9) and ``--output`` (default ``output``)."""
    parser.add_argument("--threads", type=lambda text: [int(x) for x in text.split(",")], default=[1, 2])
    parser.add_argument("--repetitions", type=int, default=9)
    parser.add_argument("--output", type=Path, default=output)


def add_threads_argument(parser: Any) -> None:
    """``--threads``: torch's intra-op threads. Default 1: these models are too small to gain from more,
    and on a shared machine extra threads only wait for each other (10x slower runs seen on 2 busy cores)."""
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")


def add_workdir_argument(parser: Any) -> None:
    """``--workdir``: keep the studies and runs in this folder instead of a temporary one. The studies
    resume from their storage there, so a killed run started again with the same folder loses nothing."""
    parser.add_argument("--workdir", type=Path, default=None, help="keep studies here; a re-run resumes them")


def task_list(parser: Any, text: str, known: Any) -> list[str]:
    """``--tasks``: the comma-separated names in ``text``; an unknown one is a usage error naming the choices."""
    tasks = [task.strip() for task in text.split(",") if task.strip()]
    unknown = sorted(set(tasks) - set(known))
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    return tasks
