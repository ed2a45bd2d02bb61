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
        *(PACKAGE / "study").glob("*.py"),
        *(PACKAGE / "execution").glob("*.py"),
        *(PACKAGE / "compare").glob("*.py"),
        *(PACKAGE / "finder").glob("*.py"),
        *(PACKAGE / "cli").glob("*.py"),
        *(PACKAGE / name for name in ("run.py", "report.py", "baselines.py")),
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


# The floors, lowest first: a module imports from its own floor or below, never above (lazy imports too).
FLOORS = [
    {"_imports", "_yaml", "attributes"},
    {"optim"},
    {"lightning"},
    {"tasks", "run", "baselines"},
    {"search"},
    {"execution"},
    {"study"},
    {"tuner"},
    {"finder", "compare", "report"},
    {"cli", "__init__", "__main__"},
]
MAX_MODULE_LINES = 500


def _room(module: str) -> str:
    """'stacey_lightning.study.spec' -> 'study'; 'stacey_lightning' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _floor(room: str) -> int:
    return next(index for index, rooms in enumerate(FLOORS) if room in rooms)


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_nothing_imports_upwards(path):
    room = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    for line, module in _imported(ast.parse(path.read_text(encoding="utf-8"))):
        if module.startswith("stacey_lightning."):
            target = _room(module)
            assert _floor(target) <= _floor(room), f"{path.relative_to(PACKAGE)}:{line} imports {module} from above"


@pytest.mark.parametrize("path", sorted((PACKAGE / "execution").glob("*.py")), ids=lambda p: p.name)
def test_execution_knows_nothing_of_stacey(path):
    """Running a study across processes and hosts: only the names a study records, and Optuna."""
    for line, module in _imported(ast.parse(path.read_text(encoding="utf-8"))):
        if module.startswith("stacey_lightning"):
            assert module == "stacey_lightning.attributes" or module.startswith("stacey_lightning.execution."), (
                f"execution/{path.name}:{line} imports {module}"
            )


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_no_module_is_a_hall(path):
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by concern"


def test_the_finder_is_not_inside_the_tuner():
    assert (PACKAGE / "finder").is_dir() and not (PACKAGE / "tuner" / "finder").exists()
    assert not list((PACKAGE / "tuner").glob("*find*.py"))


PRIVATE_ATTRIBUTES = {"_storage", "_trial_id", "_study_id", "_backend"}


@pytest.mark.parametrize("path", MODULES, ids=_ids(MODULES))
def test_only_the_adapter_touches_optunas_private_api(path):
    """execution/optuna_private.py holds every use (tests/execution/test_optuna_private.py checks them)."""
    if path == PACKAGE / "execution" / "optuna_private.py":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for line, module in _imported(tree):
        if module.startswith("optuna"):
            assert not any(part.startswith("_") for part in module.split(".")), (
                f"{path.relative_to(PACKAGE)}:{line} imports Optuna's private {module}"
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE_ATTRIBUTES:
            owner = node.value
            own = isinstance(owner, ast.Name) and owner.id == "self"
            assert own, f"{path.relative_to(PACKAGE)}:{node.lineno} reads .{node.attr} of an Optuna object"


MAX_PARAMETERS = 12
# The one door that lists a study's settings: every other function takes a StudySpec or passes **settings.
THE_DOOR = ("study/spec.py", "study_spec")
ABOVE_OPTIM_AND_TASKS = [path for path in MODULES if path.relative_to(PACKAGE).parts[0] not in ("optim", "tasks")]


@pytest.mark.parametrize("path", ABOVE_OPTIM_AND_TASKS, ids=_ids(ABOVE_OPTIM_AND_TASKS))
def test_settings_are_said_once(path):
    where = str(path.relative_to(PACKAGE))
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (where, node.name) != THE_DOOR:
            count = len(_parameters(node))
            assert count <= MAX_PARAMETERS, f"{where}:{node.lineno} {node.name} takes {count} parameters"


def test_the_door_lists_every_field_of_the_spec_that_a_user_sets():
    import inspect
    from dataclasses import fields

    from stacey_lightning.study.spec import PER_PROCESS, StudySpec, study_spec

    settable = {field.name for field in fields(StudySpec)} - PER_PROCESS
    assert set(inspect.signature(study_spec).parameters) == settable
