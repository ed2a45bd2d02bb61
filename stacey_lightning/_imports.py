"""Objects named by an import path: a task's ``make``, a sampler, a pruner, a scheduler, an optimizer class.

Both spellings users know are accepted: ``"package.module:name"`` (setuptools entry points, ``--task``;
the name may be dotted, ``module:Class.attribute``) and ``"package.module.Name"`` (LightningCLI class
paths, ``torch.optim.AdamW``). Resolution is ``pkgutil.resolve_name``; what this module adds is one
error for every caller: a one-line ValueError that names the setting, the path and what failed.
"""

from __future__ import annotations

import pkgutil
from typing import Any

__all__ = ["import_object"]

# Top-level modules of optional dependencies and what to pip install for each.
_PIP_NAMES = {
    "lion_pytorch": "lion-pytorch",
    "torchvision": "torchvision",
    "lightning": "lightning",
    "schedulefree": "'stacey-lightning[peers]' (or schedulefree)",
}


def import_object(path: str, *, what: str) -> Any:
    """The object at ``path`` ("package.module:name" or "package.module.Name").

    ``what`` names the setting in errors ("sampler", "task 'x:y'"). Raises a ValueError of one line when
    the path is malformed, its module cannot be imported, or the module has no such name. An error
    raised while the module itself runs (other than a failed import) is the module's own and propagates.
    """
    if ":" in path:
        module_name, _, name = path.partition(":")
    else:
        module_name, _, name = path.rpartition(".")
    if not (module_name and name):
        raise ValueError(f"{what}: {path!r} is not an import path ('package.module:name' or 'package.module.Name')")
    try:
        return pkgutil.resolve_name(f"{module_name}:{name}")
    except ImportError as error:
        hint = _hint(error, module_name)
        raise ValueError(f"{what}: cannot import module {module_name!r} ({_one_line(error)}){hint}") from None
    except AttributeError as error:
        if error.name not in name.split("."):
            raise  # raised by the module's own code, not a missing name
        raise ValueError(f"{what}: module {module_name!r} has no attribute {name!r}") from None


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _hint(error: ImportError, module_name: str) -> str:
    """What to do about a missing module: install a known dependency, or put the user's folder on the path."""
    missing = (error.name or "").partition(".")[0]
    if missing in _PIP_NAMES:
        return f"; pip install {_PIP_NAMES[missing]}"
    if isinstance(error, ModuleNotFoundError) and missing == module_name.partition(".")[0]:
        return "; run from the folder that holds it, or put that folder on PYTHONPATH"
    return ""
