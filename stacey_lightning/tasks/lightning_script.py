"""A LightningCLI script as the tuner reads it: ``--lightning-script main.py`` beside ``--lightning-config``.

``LightningCLI(Model, Data)``, the first form Lightning's docs teach, fixes the classes in the script and
writes ``model:`` and ``data:`` without a ``class_path``; the config file alone does not say which
classes they are. The script does. It is read without running its ``__main__`` block:

1. ``ast`` finds the ``LightningCLI(...)`` call (or the call of a subclass of it), in a function or under
   ``if __name__ == "__main__":``; a call that would run on import is refused.
2. The script is imported as a module named ``stacey_lightning_script_<stem>`` (not ``__main__``, so
   its main block does not run), with its folder first on the import path.
3. Each argument of the call is evaluated in that module's namespace, after the simple assignments
   (``name = ...``) that precede the call in its function: the model and datamodule classes,
   ``trainer_defaults``, ``seed_everything_default``, ``subclass_mode_model/data``, ``parser_kwargs``,
   ``save_config_kwargs``, ...

``fit_parser()`` then builds the parser of ``fit`` through the script's own LightningCLI class with those
arguments (it stops the class before it parses anything), so the config is checked, parsed and
instantiated as ``python main.py fit --config config.yaml`` would do it.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["LightningFiles", "LightningScript", "load_lightning_script"]

_MODULE_PREFIX = "stacey_lightning_script_"
# LightningCLI's arguments the tuner sets itself when it builds the parser.
_SET_BY_THE_TUNER = ("args", "run")


@dataclass(frozen=True)
class LightningFiles(os.PathLike):
    """The task of ``--lightning-config CONFIG --lightning-script SCRIPT``: a path (the config's, for
    ``os.fspath``) that carries the script. Picklable, so worker processes resolve it as the parent does."""

    config: str
    script: str

    def __fspath__(self) -> str:
        return self.config

    def __str__(self) -> str:
        return self.config


class _ParserReady(Exception):
    """Raised by the tuner's subclass of the script's LightningCLI class once its parsers are built."""

    def __init__(self, cli: Any) -> None:
        super().__init__("parser ready")
        self.cli = cli


class LightningScript:
    """The ``LightningCLI(...)`` call of a script, read without running the script's main block.

    Attributes:
        path: the script, as given.
        cli_class: the class called (LightningCLI or a subclass of it).
        arguments: the call's arguments by name, evaluated (``model_class``, ``trainer_defaults``, ...).
        line: the call's line in the script.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        try:
            source = Path(self.path).read_text(encoding="utf-8")
        except OSError as error:
            raise ValueError(f"{self.path}: cannot read the LightningCLI script ({error.strerror})") from None
        try:
            tree = ast.parse(source, filename=self.path)
        except SyntaxError as error:
            raise ValueError(f"{self.path}: line {error.lineno}: not Python ({error.msg})") from None
        module = self._import()
        call, scope = self._find_call(tree, module)
        self.line = call.lineno
        self.cli_class = self._evaluate(call.func, scope, module, "LightningCLI")
        values = [self._evaluate(node, scope, module, f"argument {index + 1}") for index, node in enumerate(call.args)]
        keywords = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ValueError(f"{self.path}: line {self.line}: LightningCLI(**...): write its arguments by name")
            keywords[keyword.arg] = self._evaluate(keyword.value, scope, module, keyword.arg)
        try:
            bound = inspect.signature(self.cli_class.__init__).bind(None, *values, **keywords)
        except TypeError as error:
            raise ValueError(f"{self.path}: line {self.line}: {self.cli_class.__name__}(...): {error}") from None
        self.arguments = {name: value for name, value in bound.arguments.items() if name != "self"}
        for name in _SET_BY_THE_TUNER:
            self.arguments.pop(name, None)

    @property
    def model_class(self) -> Any:
        return self.arguments.get("model_class")

    @property
    def datamodule_class(self) -> Any:
        return self.arguments.get("datamodule_class")

    def subclass_mode(self, section: str) -> bool:
        """Whether the script's LightningCLI reads ``section`` ("model" or "data") as class_path and init_args."""
        if section == "model":
            return self.model_class is None or bool(self.arguments.get("subclass_mode_model", False))
        return self.datamodule_class is None or bool(self.arguments.get("subclass_mode_data", False))

    def trainer_default_callbacks(self) -> list[Any]:
        """The callbacks of the script's ``trainer_defaults`` (LightningCLI adds them to the file's)."""
        callbacks = (self.arguments.get("trainer_defaults") or {}).get("callbacks") or []
        return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]

    def fit_parser(self) -> Any:
        """The parser of ``python script fit``, built by the script's LightningCLI class with its arguments."""

        class _StopBeforeParsing(self.cli_class):
            def parse_arguments(self, parser: Any, args: Any) -> None:
                raise _ParserReady(self)

        try:
            _StopBeforeParsing(**self.arguments, args=[], run=True)
        except _ParserReady as ready:
            parsers = getattr(ready.cli, "_subcommand_parsers", {})
            if "fit" not in parsers:
                raise ValueError(f"{self.path}: {self.cli_class.__name__} has no fit subcommand") from None
            return parsers["fit"]
        raise ValueError(f"{self.path}: {self.cli_class.__name__} did not build its parser")

    def _import(self) -> ModuleType:
        folder = os.path.dirname(os.path.abspath(self.path))
        if folder not in sys.path:
            sys.path.insert(0, folder)
        name = _MODULE_PREFIX + Path(self.path).stem.replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, self.path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # classes defined in the script pickle and deep-copy by this name
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            sys.modules.pop(name, None)
            raise ValueError(f"{self.path}: importing the script failed: {type(error).__name__}: {error}") from None
        return module

    def _find_call(self, tree: ast.Module, module: ModuleType) -> tuple[ast.Call, list[ast.stmt]]:
        """The first call of LightningCLI or a subclass, and the statements of the block that holds it."""
        from lightning.pytorch.cli import LightningCLI

        for scope, statement in _statements(tree.body, top=True):
            for node in ast.walk(statement):
                if not isinstance(node, ast.Call) or _dotted(node.func) is None:
                    continue
                called = _lookup(_dotted(node.func), module.__dict__)
                if not (isinstance(called, type) and issubclass(called, LightningCLI)):
                    continue
                if scope is None:
                    raise ValueError(
                        f"{self.path}: line {node.lineno}: {_dotted(node.func)}(...) runs when the script is "
                        'imported; put it in a function or under if __name__ == "__main__":'
                    )
                return node, scope
        raise ValueError(
            f"{self.path}: no LightningCLI(...) call found; the script should call LightningCLI(Model, Data, ...) "
            'in a function or under if __name__ == "__main__":'
        )

    def _evaluate(self, node: ast.expr, scope: list[ast.stmt], module: ModuleType, what: str) -> Any:
        namespace = dict(module.__dict__)
        for statement in scope:  # the simple assignments before the call, in order
            if statement.lineno >= self.line:
                break
            if isinstance(statement, ast.Assign) and all(isinstance(t, ast.Name) for t in statement.targets):
                try:
                    value = eval(compile(ast.Expression(statement.value), self.path, "eval"), namespace)
                except Exception:
                    continue  # a name the call may not need; if it does, the call's own evaluation says so
                namespace.update({target.id: value for target in statement.targets})
        try:
            return eval(compile(ast.Expression(node), self.path, "eval"), namespace)
        except Exception as error:
            raise ValueError(
                f"{self.path}: line {self.line}: LightningCLI's {what} ({ast.unparse(node)}): cannot evaluate it "
                f"outside the script's main block ({type(error).__name__}: {error})"
            ) from None


def load_lightning_script(path: str | os.PathLike) -> LightningScript:
    """The script at ``path``, read once per process and file version."""
    try:
        key = (os.path.abspath(path), os.stat(path).st_mtime_ns)
    except OSError as error:
        raise ValueError(f"{os.fspath(path)}: cannot read the LightningCLI script ({error.strerror})") from None
    if key not in _LOADED:
        _LOADED[key] = LightningScript(path)
    return _LOADED[key]


_LOADED: dict[tuple[str, int], LightningScript] = {}


def _statements(body: list[ast.stmt], *, top: bool) -> Any:
    """(scope, statement) for each statement: scope is the list of statements of the block the statement
    runs in when called (a function's body, the main block's body), or None where it runs on import."""
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from ((statement.body, inner) for inner in statement.body)
        elif isinstance(statement, ast.ClassDef):
            for inner in statement.body:
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield from ((inner.body, nested) for nested in inner.body)
        elif top and isinstance(statement, ast.If) and _is_main_test(statement.test):
            yield from ((statement.body, inner) for inner in statement.body)
        else:
            yield None, statement


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either side)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _lookup(dotted: str, namespace: dict[str, Any]) -> Any:
    first, *rest = dotted.split(".")
    value = namespace.get(first)
    for attribute in rest:
        value = getattr(value, attribute, None)
    return value
