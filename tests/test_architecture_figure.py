"""examples/make_architecture_figure.py draws the README's figure, and what it names exists where it says."""

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stacey_lightning"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _defined(path: Path) -> set[str]:
    """Every class and function of a module, methods as ``Class.method``."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {f"{node.name}.{item.name}" for item in node.body if isinstance(item, ast.FunctionDef)}
    return names


def test_the_figure_is_drawn_and_names_what_exists(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    figure = importlib.import_module("make_architecture_figure")
    # A trial's path: each step's class, function or method is defined in the module it names.
    for step, where, _ in figure.TRIAL_PATH:
        path = PACKAGE / where.split(":")[0]
        assert path.is_file(), step
        for name in step.split(", "):
            name = name.removeprefix(f"{path.stem}.")
            if NAME.fullmatch(name) and name != path.stem:  # a method may be named without its class
                defined = _defined(path) | {method.split(".")[-1] for method in _defined(path)}
                assert name in defined, f"{step!r}: no {name} in {path.relative_to(ROOT)}"
    # The layers: the modules each package's box lists are in that package.
    for places, modules, _, _ in figure.LAYERS:
        for place, listed in zip(places.split("·"), modules.split("·")):
            folder = PACKAGE / place.strip()
            if place.strip().endswith("/"):
                for module in (name.strip().removesuffix(".py") for name in listed.split(",")):
                    if NAME.fullmatch(module):
                        assert (folder / f"{module}.py").is_file(), f"{place.strip()}: no module {module}"
    figure.draw(tmp_path / "architecture.png")
    assert (tmp_path / "architecture.png").stat().st_size > 10_000
