"""The shape of the upper floors: settings travel as one spec, not as long argument lists; one door for
optimizers; no variable in the library that changes budgets. Read from the source, so a change that
breaks the rule fails here with the place named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stacey_lightning"
# The tuning and comparison code: where settings used to be carried from room to room.
UPPER_FLOORS = sorted(
    [
        *(PACKAGE / "tuner").glob("*.py"),
        *(PACKAGE / "compare").glob("*.py"),
        *(PACKAGE / "finder").glob("*.py"),
        *(PACKAGE / name for name in ("run.py", "cli.py", "report.py", "baselines.py")),
    ]
)
MAX_PRIVATE_PARAMETERS = 6
MAX_POSITIONAL_ARGUMENTS = 5


def _ids(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(PACKAGE)) for path in paths]


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    arguments = function.args
    names = [a.arg for a in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)]
    return [name for name in names if name not in ("self", "cls")]


@pytest.mark.parametrize("path", UPPER_FLOORS, ids=_ids(UPPER_FLOORS))
def test_no_private_function_takes_many_parameters_and_no_call_passes_many_positionals(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_"):
            if node.name.startswith("__"):
                continue
            count = len(_parameters(node))
            assert count <= MAX_PRIVATE_PARAMETERS, f"{path.name}:{node.lineno} {node.name} takes {count} parameters"
        if isinstance(node, ast.Call):
            count = len(node.args)
            assert count <= MAX_POSITIONAL_ARGUMENTS, f"{path.name}:{node.lineno}: a call passes {count} positionals"


def test_nothing_in_the_package_sets_a_method_on_a_users_module():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "MethodType" not in text, f"{path.relative_to(PACKAGE)} binds a method on an instance"
        assert ".configure_optimizers =" not in text, f"{path.relative_to(PACKAGE)} replaces configure_optimizers"


def test_no_environment_variable_in_the_library_changes_budgets():
    for path in PACKAGE.rglob("*.py"):
        assert "STACEY_SMOKE" not in path.read_text(encoding="utf-8"), path.relative_to(PACKAGE)


def test_the_code_cites_the_method_page_that_the_repository_has():
    page = PACKAGE.parent / "docs" / "algorithm.md"
    assert page.is_file()
    cited = [path for path in PACKAGE.rglob("*.py") if "docs/algorithm.md" in path.read_text(encoding="utf-8")]
    assert cited, "no module cites docs/algorithm.md"
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8").replace("docs/algorithm.md", "")
        assert "ALGORITHM.md" not in text, f"{path.relative_to(PACKAGE)} cites a page the repository lacks"
