"""The import paths of modules that moved in the restructuring still resolve, with a warning."""

import importlib
import sys

import pytest

from stacey_lightning._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_import_path_gives_the_moved_module_with_a_deprecation_warning(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
