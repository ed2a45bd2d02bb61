"""The screen holds the command's own lines: what Lightning says again on every run, and each warning, once."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["screen"]

# Where Lightning says what it says again for every Trainer and fit: rank_zero_info (of Lightning and of
# Fabric: "GPU available", "TPU available", "HPU available", "You are using a CUDA device", the tips,
# "`Trainer.fit` stopped"), a GPU's "LOCAL_RANK ... CUDA_VISIBLE_DEVICES", the process group's
# "Initializing distributed", and model summaries where --trainer enable_model_summary=true asks for them.
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.accelerators.cuda",
    "lightning.fabric.utilities.distributed",
    "lightning.pytorch.callbacks.model_summary",
)


class _OnceEach(logging.Filter):
    """Lets each distinct message through once: as a filter on loggers, and as ``warnings.showwarning`` in
    front of ``show``, the one in use before (Python's own record of what it has shown is cleared whenever
    a library's ``catch_warnings`` ends, which would show a warning again on every run)."""

    def __init__(self, show: Callable) -> None:
        super().__init__()
        self.show = show
        self.shown: set[str] = set()

    def first(self, message: str) -> bool:
        if message in self.shown:
            return False
        self.shown.add(message)
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        return self.first(record.getMessage())

    def showwarning(self, message: Any, category: type, filename: str, lineno: int, file=None, line=None) -> None:
        if self.first(f"{category.__name__}: {message}"):
            self.show(message, category, filename, lineno, file=file, line=line)


@contextlib.contextmanager
def screen(verbose: bool) -> Iterator[None]:
    """Lightning's messages (``_LIGHTNING_LOGGERS``) and warnings once each for the command's duration, or
    with ``verbose`` every time, even where a study quiets Lightning's loggers (``quiet_libraries``)."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    if verbose:
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.INFO)  # their own level, which the level set on their parents does not cut
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
        return
    with warnings.catch_warnings():  # gives back the showwarning in use
        once = _OnceEach(warnings.showwarning)
        warnings.showwarning = once.showwarning
        for logger in loggers:
            logger.addFilter(once)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(once)
