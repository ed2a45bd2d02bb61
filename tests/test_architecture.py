"""The shape of the upper floors: settings travel as one spec, not as long argument lists; one door for
optimizers; no variable in the library that changes budgets. Read from the source, so a change that
breaks the rule fails here with the place named."""

from __future__ import annotations

import ast
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

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


class PlainModule(pl.LightningModule):
    """A user's module without the mixin (module level: it must pickle)."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()


def _bound_on_the_instance(module) -> list[str]:
    """Names in ``vars(module)`` that hold a callable which is not a submodule: a method set on the instance."""
    return [name for name, value in vars(module).items() if callable(value) and not isinstance(value, torch.nn.Module)]


def test_nothing_in_the_package_sets_a_method_on_a_users_module():
    """Every door through which the package handles a user's module leaves its methods on its class: the module
    pickles as itself (ddp_spawn, workers) and a hook the package sets cannot outlive the run."""
    import pickle

    from stacey_lightning import run
    from stacey_lightning.tasks.digits import make_digits

    module, _ = make_digits(seed=0, foreach=True)
    plain = PlainModule()
    for target in (module, plain):
        for optimizer, options in (("stacey", {"p": 3.0}), ("adamw", None)):
            run.use_optimizer(target, run.optimizer_choice(optimizer, options))
            target.configure_optimizers()
            assert _bound_on_the_instance(target) == [], (type(target).__name__, optimizer)
        assert type(pickle.loads(pickle.dumps(target))).__name__ == type(target).__name__


# Every environment variable the package reads, and why; a budget or setting read from the environment would
# make a study's results depend on a shell's state that no file records.
ENVIRONMENT = {
    "CC": "the C compiler of the CPU kernel",
    "USERNAME": "the per-user folder of the CPU kernel's cache on Windows",
    "PL_GLOBAL_SEED": "Lightning's seed, read back when a LightningCLI fit replays a trial",
    "CUDA_VISIBLE_DEVICES": "each worker process's own GPUs",
    "RANK": "whether this process is a follower rank of a DDP job",
    "LOCAL_RANK": "as RANK",
    "NODE_RANK": "as RANK",
    "TORCHELASTIC_RUN_ID": "the key shared by a torchrun job's ranks",
    "MASTER_ADDR": "as TORCHELASTIC_RUN_ID",
    "MASTER_PORT": "as TORCHELASTIC_RUN_ID",
    "STACEY_TUNE_GROUP": "the key shared by the ranks Lightning's launcher starts",
}


def _loop_names(tree: ast.AST) -> dict[str, list]:
    """Loop and comprehension variables over literal tuples: the constants each takes (None: not a constant)."""
    loops = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
            if isinstance(node.iter, (ast.Tuple, ast.List)):
                loops[node.target.id] = [e.value if isinstance(e, ast.Constant) else None for e in node.iter.elts]
    return loops


def _environment_key(node: ast.AST) -> ast.AST | None:
    """The key expression of an environment read (os.environ.get/setdefault, os.getenv, os.environ[...],
    ... in os.environ), or None where ``node`` is no such read."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        owner = node.func.value
        on_environ = isinstance(owner, ast.Attribute) and owner.attr == "environ"
        if (on_environ and node.func.attr in ("get", "setdefault")) or node.func.attr == "getenv":
            return node.args[0]
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "environ":
        return node.slice
    if isinstance(node, ast.Compare) and any(isinstance(c, ast.Attribute) and c.attr == "environ" for c in
                                             node.comparators):  # fmt: skip
        return node.left
    return None


def test_every_environment_variable_the_package_reads_is_known():
    read = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loops = _loop_names(tree)
        for node in ast.walk(tree):
            key = _environment_key(node)
            if key is None:
                continue
            names = [key.value] if isinstance(key, ast.Constant) else loops.get(getattr(key, "id", None), [None])
            for name in names:
                assert name in ENVIRONMENT, f"{path.relative_to(PACKAGE)}:{node.lineno} reads environment {name!r}"
                read.add(name)
    assert read == set(ENVIRONMENT)  # and the list names nothing the package no longer reads


def test_every_page_the_code_cites_exists():
    import re

    cited = re.compile(r"(?:docs|benchmarks/results)/[A-Za-z0-9_.-]+\.(?:md|png|csv)")
    pages = set()
    for path in PACKAGE.rglob("*.py"):
        for page in cited.findall(path.read_text(encoding="utf-8")):
            assert (PACKAGE.parent / page).is_file(), f"{path.relative_to(PACKAGE)} cites {page}, which does not exist"
            pages.add(page)
    assert "docs/algorithm.md" in pages  # the method page is cited where the update is written


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
