"""What a user imports from ``stacey_lightning``: the public names, among them every error a study raises for
the caller to catch; loaded on first use (``import stacey_lightning`` loads neither torch nor Optuna), and
visible to type checkers (the ``TYPE_CHECKING`` imports, and ``py.typed`` shipped with the package)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import stacey_lightning

PACKAGE = Path(stacey_lightning.__file__).parent
ERRORS = ["NoTrialSucceeded", "TooManyFailures", "StorageUnavailable", "StorageError", "SearchSpaceError"]
# Raised and caught inside the commands, which print it as one line: no caller of the package sees it.
_INTERNAL_ERRORS = {"UsageError"}


def test_the_errors_a_study_raises_are_importable_from_the_package():
    from stacey_lightning import NoTrialSucceeded, SearchSpaceError, StorageError, StorageUnavailable, TooManyFailures
    from stacey_lightning.execution.outage import StorageUnavailable as defined_storage_unavailable
    from stacey_lightning.execution.storage import StorageError as defined_storage_error
    from stacey_lightning.execution.supervisor import TooManyFailures as defined_too_many_failures
    from stacey_lightning.search.distributions import SearchSpaceError as defined_search_space_error
    from stacey_lightning.tuner.tuning import NoTrialSucceeded as defined_no_trial_succeeded

    assert NoTrialSucceeded is defined_no_trial_succeeded and TooManyFailures is defined_too_many_failures
    assert StorageUnavailable is defined_storage_unavailable and StorageError is defined_storage_error
    assert SearchSpaceError is defined_search_space_error
    # Bad input is a ValueError, as before they were exported; a study that could not go on, a RuntimeError.
    assert issubclass(StorageError, ValueError) and issubclass(SearchSpaceError, ValueError)
    assert all(issubclass(error, RuntimeError) for error in (NoTrialSucceeded, TooManyFailures, StorageUnavailable))
    assert set(ERRORS) <= set(stacey_lightning.__all__) and set(ERRORS) <= set(dir(stacey_lightning))


def _exception_classes() -> list[tuple[str, str]]:
    """(module path, class name) of every public exception class the package defines, read from the source."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = [base.id if isinstance(base, ast.Name) else getattr(base, "attr", "") for base in node.bases]
            if any(base.endswith(("Error", "Exception", "Failures", "Unavailable")) for base in bases) or any(
                base in ERRORS for base in bases
            ):
                found.append((str(path.relative_to(PACKAGE)), node.name))
    return found


def test_every_error_the_package_defines_is_exported():
    found = _exception_classes()
    assert {name for _, name in found} >= set(ERRORS), found  # the scan finds what it should
    missing = [(path, name) for path, name in found if name not in stacey_lightning.__all__ + list(_INTERNAL_ERRORS)]
    assert not missing, f"export these from stacey_lightning (__init__.py's _EXPORTS and TYPE_CHECKING): {missing}"


@pytest.mark.parametrize("name", stacey_lightning.__all__)
def test_every_public_name_resolves_to_its_module(name):
    module = importlib.import_module(stacey_lightning._EXPORTS[name])
    assert getattr(stacey_lightning, name) is getattr(module, name)


def test_type_checkers_see_the_same_names_as_the_lazy_exports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    block = next(
        node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
    )
    imported = {
        alias.name: statement.module
        for statement in block.body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }
    assert imported == stacey_lightning._EXPORTS
    assert set(imported) == set(stacey_lightning.__all__)


def test_importing_the_package_loads_no_heavy_library():
    code = (
        "import sys, stacey_lightning; from stacey_lightning import __all__; "
        "print(sorted(m for m in ('torch', 'optuna', 'lightning') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_package_ships_py_typed():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    assert (PACKAGE / "py.typed").is_file()
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["stacey_lightning"]
