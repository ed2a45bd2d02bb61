"""The YAML files the package reads (a Stacey config, a search space, a LightningCLI config) all hold a
mapping; one reader gives every one of them the same one-line errors, naming the file and what it was
read as."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

__all__ = ["read_mapping"]


def read_mapping(path: str | os.PathLike, what: str, error: type[Exception] = ValueError) -> Mapping[str, Any]:
    """The mapping in the YAML file ``path`` ({} for an empty file), read as ``what`` ("the Stacey config").

    Raises:
        error: one line, when the file cannot be read, is not YAML, or holds something other than a mapping.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            content = yaml.safe_load(stream)
    except OSError as failure:
        raise error(f"{os.fspath(path)}: cannot read {what} ({failure.strerror})") from None
    except yaml.YAMLError as failure:
        raise error(f"{os.fspath(path)}: not valid YAML ({' '.join(str(failure).split())})") from None
    if content is None:
        return {}
    if not isinstance(content, Mapping):
        raise error(f"{os.fspath(path)}: expected {what}, a mapping of keys to values, got {content!r}")
    return content
