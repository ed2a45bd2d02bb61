"""Comparison: one task trained with Stacey and with the optimizers people use today, several seeds each.

``results`` holds what a comparison produces; ``tuned`` tunes every optimizer with the same budget
first (``--tune-trials``); ``runs`` trains and times the runs (``compare``); ``outputs`` reads their
curves back and writes the figure and the tables.
"""

from stacey_lightning.compare.results import Comparison, RunResult, Tuned
from stacey_lightning.compare.runs import StepClock, compare

__all__ = ["compare", "Comparison", "RunResult", "Tuned", "StepClock"]
