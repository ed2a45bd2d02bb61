"""The Python standard library's own source as text for byte-level language models (every CPython ships it:
no download), cut into windows.

Two corpora of different modules: the ``dev`` workloads read ``CORPORA["dev"]``, the ``validation`` ones
``CORPORA["validation"]``, so a validation language model is also judged on text no dev workload trained
on. The files are read from ``sysconfig.get_paths()["stdlib"]`` as raw bytes (the vocabulary is the 256
byte values); they change a little between Python versions, so compare numbers from one version.
(``pydoc_data`` is never read.)

Split: per file, the first 90% of its bytes train and the last 10% validate (``textlm.split_text``).
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

import torch

from stacey_lightning.tasks.textlm import split_text

__all__ = ["CORPORA", "VOCABULARY", "byte_windows"]

VOCABULARY = 256
CORPORA = {
    "dev": ("argparse.py", "collections/__init__.py", "email/message.py", "json/decoder.py", "shlex.py", "string.py"),
    "validation": ("configparser.py", "logging/__init__.py", "gettext.py", "ast.py"),
}


def byte_windows(
    corpus: str, context: int, max_bytes: int | None = None
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Non-overlapping windows of ``context`` bytes from ``CORPORA[corpus]``: inputs and targets, int64
    (n, context), the targets one byte ahead. ``max_bytes`` (default all) keeps the first
    ``max_bytes // len(files)`` bytes of each file before the split, so that every file is read."""
    if corpus not in CORPORA:
        raise ValueError(f"Invalid corpus: {corpus!r} (choose one of {', '.join(CORPORA)})")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    train, validation = [], []
    for name in CORPORA[corpus]:
        path = stdlib / name
        if not path.is_file():
            raise FileNotFoundError(f"the suite's text needs the standard library source file {path}, which this "
                                    "Python installation lacks; use a full CPython installation")  # fmt: skip
        text = path.read_bytes()
        head, tail = split_text(text if max_bytes is None else text[: max_bytes // len(CORPORA[corpus])])
        train.append(head)
        validation.append(tail)
    return tuple(_windows(b"".join(parts), context) for parts in (train, validation))


def _windows(text: bytes, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    count = (len(text) - 1) // context
    if count < 1:
        raise ValueError(f"Invalid context: {context} (the text has {len(text)} bytes; lower it or raise max_bytes)")
    stream = torch.frombuffer(bytearray(text[: count * context + 1]), dtype=torch.uint8).long()
    return stream[:-1].view(count, context), stream[1:].view(count, context)
