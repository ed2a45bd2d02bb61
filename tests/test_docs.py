"""Every code block of README.md and docs/*.md runs as written, at tiny budgets (STACEY_SMOKE=1), so the
documentation cannot drift from the code.

Each page runs in a fresh folder, its blocks in order (a later block may use what an earlier one
wrote), with the repository's ``examples/`` and ``benchmarks/`` beside it. ``bash`` blocks run command
by command: the package's own commands (stacey-tune, stacey-compare, stacey-report, python -m
stacey_lightning) in this process, to spare a start-up each, and everything else through bash.
``python`` blocks are executed; ``yaml`` blocks are read by what they document (a search space or a
Stacey config). A block may be skipped only with a reason, in a comment on the line above it:
``<!-- docs-test: skip (needs a PostgreSQL server at db-host) -->``. Commands that start servers or
install packages (tensorboard, optuna-dashboard, pip install) and the test suite itself are recorded,
not run. Blocks tagged ``text`` are prose (formulas, printed output).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from stacey_lightning import cli
from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.tuner.search_space import KEYS, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("bash", "python", "yaml")
PROSE = ("text",)
SKIP = re.compile(r"<!-- docs-test: skip \((.+)\) -->\s*$")
FENCE = re.compile(r"^\s*```(\S*)\s*$")
IN_PROCESS = {"stacey-tune": cli.tune_main, "stacey-compare": cli.compare_main, "stacey-report": cli.report_main}
# Recorded, not run: servers, installs, the test suite.
NOT_RUN = (("tensorboard",), ("optuna-dashboard",), ("pip", "install"), ("python", "-m", "pip"),
           ("python", "-m", "pytest"), ("pytest",))  # fmt: skip


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    skip: str | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with the skip reason written above each (if any)."""
    found, lines = [], page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith("```"))
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        skip = SKIP.match(previous.strip())
        code = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
        found.append(Block(page, index + 1, opening.group(1), code,
                           skip.group(1) if skip else None))  # fmt: skip
        index = end + 1
    return found


def commands(code: str) -> list[list[str]]:
    """A bash block as commands (continuations joined, comments dropped, `a && b` split), each as argv."""
    joined = re.sub(r"\\\n", " ", code)
    result = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, "&&"]:
            if word == "&&":
                if command:
                    result.append(command)
                command = []
            else:
                command.append(word)
    return result


def _run_bash(block: Block, folder: Path, env: dict[str, str]) -> None:
    for argv in commands(block.code):
        if any(tuple(argv[: len(prefix)]) == prefix for prefix in NOT_RUN):
            continue
        if argv[0] in IN_PROCESS:
            status = IN_PROCESS[argv[0]](argv[1:])
        elif argv[:3] == ["python", "-m", "stacey_lightning"]:
            status = cli.main(argv[3:])
        else:
            command = [sys.executable, *argv[1:]] if argv[0] == "python" else argv
            status = subprocess.run(command, cwd=folder, env=env, timeout=300).returncode
        assert status == 0, f"{block}: {shlex.join(argv)} exited with {status}"


def _run_yaml(block: Block) -> None:
    content = yaml.safe_load(block.code)
    if set(content) <= set(KEYS) and any(
        isinstance(value, dict) and "distribution" in value for value in content.values()
    ):
        SearchSpace.load(content)
    else:
        StaceyConfig.from_source(content)


def _page_ids() -> list[str]:
    return [str(page.relative_to(ROOT)) for page in PAGES]


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=_page_ids())
def test_every_block_of_the_page_runs_as_written(page, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STACEY_SMOKE", "1")
    monkeypatch.chdir(tmp_path)
    for name in ("examples", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    namespace: dict = {"__name__": "__docs__"}
    for block in blocks(page):
        assert block.language in RUN + PROSE, f"{block}: tag the block (bash, python, yaml; text for prose)"
        if block.skip or block.language in PROSE:
            continue
        if block.language == "bash":
            _run_bash(block, tmp_path, env)
        elif block.language == "python":
            exec(compile(block.code, str(block), "exec"), namespace)
        else:
            _run_yaml(block)


def test_commands_are_read_like_bash():
    assert commands("a --x 1 \\\n    --y 'two words'  # note\npip install z && b\n") == [
        ["a", "--x", "1", "--y", "two words"], ["pip", "install", "z"], ["b"]]  # fmt: skip
