"""Objects by import path: both spellings, and one-line errors that name the setting and what failed."""

import json
import os.path

import pytest

from stacey_lightning._imports import import_object


@pytest.mark.parametrize(
    "path, expected", [("json:dumps", json.dumps), ("json.dumps", json.dumps), ("os:path.join", os.path.join)]
)
def test_both_spellings_resolve(path, expected):
    assert import_object(path, what="x") is expected


@pytest.mark.parametrize(
    "path, words",
    [
        ("nodots", "sampler: 'nodots' is not an import path"),
        ("json:", "is not an import path"),
        ("json.nope", "sampler: module 'json' has no attribute 'nope'"),
        ("no_such_module:make", "cannot import module 'no_such_module' (No module named 'no_such_module'); run from"),
    ],
)
def test_errors_are_one_line_and_name_what_failed(path, words):
    with pytest.raises(ValueError) as error:
        import_object(path, what="sampler")
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_missing_optional_dependency_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "needs_lion.py").write_text("import lion_pytorch.not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="pip install lion-pytorch"):
        import_object("needs_lion:Thing", what="optimizer")
