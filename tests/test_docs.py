"""Every code block of README.md and docs/*.md runs as written, at tiny budgets, so the documentation
cannot drift from the code.

The budgets are this test's, set explicitly (the library reads no variable that shrinks them): every
command's budget flags are rewritten (``--n-trials`` 2, ``--max-epochs`` 1, ``--seeds`` 1,
``--tune-trials`` 2, ``--trainer.max_epochs`` 1, ``--budget`` and ``--tune-budget`` 2) and the package's
commands get ``--trainer limit_train_batches=4 --trainer limit_val_batches=2``; in-process Python (blocks
and the commands run in this process) trains through ``run.make_trainer`` capped the same way, studies
capped at 2 trials and comparisons at 1 seed.

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

import importlib.util
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
from stacey_lightning.search.space import KEYS, SearchSpace

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = ("bash", "python", "yaml")
PROSE = ("text",)
SKIP = re.compile(r"<!-- docs-test: skip \((.+)\) -->\s*$")
# A block needing an optional package runs where it is installed:
# <!-- docs-test: needs hydra (pip install hydra-core) -->
NEEDS = re.compile(r"<!-- docs-test: needs (\S+) \((.+)\) -->\s*$")
FENCE = re.compile(r"^\s*```(\S*)\s*$")
IN_PROCESS = {"stacey-tune": cli.tune_main, "stacey-compare": cli.compare_main, "stacey-report": cli.report_main,
              "stacey-find": cli.find_main}  # fmt: skip
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
        needs = NEEDS.match(previous.strip())
        reason = skip.group(1) if skip else None
        if needs and importlib.util.find_spec(needs.group(1)) is None:
            reason = f"{needs.group(1)} is not installed ({needs.group(2)})"
        code = textwrap.dedent("\n".join(lines[index + 1 : end])) + "\n"
        found.append(Block(page, index + 1, opening.group(1), code, reason))
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


# Flag -> the tiny value the test runs it with.
TINY_FLAGS = {"--n-trials": "2", "--max-epochs": "1", "--seeds": "1", "--tune-trials": "2", "--trainer.max_epochs": "1",
              "--budget": "2", "--tune-budget": "2"}  # fmt: skip
TINY_TRAINER = ["--trainer", "limit_train_batches=4", "--trainer", "limit_val_batches=2"]
TINY_LIMITS = {"limit_train_batches": 4, "limit_val_batches": 2}


def tiny(argv: list[str]) -> list[str]:
    """``argv`` with its budget flags at TINY_FLAGS' values, and TINY_TRAINER after a package command."""
    result = []
    for index, word in enumerate(argv):
        flag, equals, _ = word.partition("=")
        if flag in TINY_FLAGS and equals:
            word = f"{flag}={TINY_FLAGS[flag]}"
        elif index and argv[index - 1] in TINY_FLAGS:
            word = TINY_FLAGS[argv[index - 1]]
        result.append(word)
    trains = argv[0] in ("stacey-tune", "stacey-compare", "stacey-find") or (
        "stacey_lightning" in argv[:6] and any(word in argv for word in ("tune", "compare", "find"))
    )
    return result + TINY_TRAINER if trains else result


@pytest.fixture
def tiny_budgets(monkeypatch):
    """In this process: every run 1 epoch of a few batches, every study 2 trials, every comparison 1 seed."""
    from stacey_lightning import run
    from stacey_lightning.compare import runs as compare_runs
    from stacey_lightning.study import spec as spec_module
    from stacey_lightning.tuner import tuning as study_module

    make_trainer, study_spec, compare = run.make_trainer, spec_module.study_spec, compare_runs.compare

    def tiny_trainer(*, max_epochs, trainer_kwargs, **kwargs):
        return make_trainer(max_epochs=1, trainer_kwargs={**trainer_kwargs, **TINY_LIMITS}, **kwargs)

    def tiny_study(task, **kwargs):
        budget = kwargs.get("budget")
        tiny = {"n_trials": min(kwargs.get("n_trials") or 2, 2), "max_epochs": 1, "budget": budget and min(budget, 2)}
        return study_spec(task, **{**kwargs, **tiny})

    def tiny_compare(task, optimizers=compare_runs.DEFAULT_OPTIMIZERS, seeds=1, **kwargs):
        return compare(task, optimizers, [0] if isinstance(seeds, int) else list(seeds)[:1], **kwargs)

    monkeypatch.setattr(run, "make_trainer", tiny_trainer)
    for module in (spec_module, study_module, compare_runs):  # each holds its own name for it
        monkeypatch.setattr(module, "study_spec", tiny_study)
    monkeypatch.setattr(compare_runs, "compare", tiny_compare)
    monkeypatch.setattr("stacey_lightning.compare.compare", tiny_compare)


def _run_bash(block: Block, folder: Path, env: dict[str, str]) -> None:
    """Run the block's commands; ``cd DIR`` holds until the block ends (the next one starts in ``folder``)."""
    try:
        _run_commands(block, folder, env)
    finally:
        os.chdir(folder)


def _run_commands(block: Block, folder: Path, env: dict[str, str]) -> None:
    for argv in commands(block.code):
        if any(tuple(argv[: len(prefix)]) == prefix for prefix in NOT_RUN):
            continue
        if argv[0] == "cd":
            folder = folder / argv[1]
            os.chdir(folder)
            continue
        argv = tiny(argv)
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
def test_every_block_of_the_page_runs_as_written(page, tmp_path, monkeypatch, capsys, tiny_budgets):
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


def test_budget_flags_are_made_tiny_and_package_commands_get_few_batches():
    assert tiny(["stacey-tune", "--n-trials", "16", "--max-epochs=8"]) == [
        "stacey-tune", "--n-trials", "2", "--max-epochs=1", *TINY_TRAINER]  # fmt: skip
    assert tiny(["torchrun", "--standalone", "-m", "stacey_lightning", "tune", "--seeds", "3"])[-5:] == [
        "1", *TINY_TRAINER]  # fmt: skip
    assert tiny(["python", "examples/digits.py", "--max-epochs", "3"]) == [
        "python",
        "examples/digits.py",
        "--max-epochs",
        "1",
    ]
