"""Comparison: one task trained with Stacey and with the optimizers people use today, several seeds each.

``runs`` trains and times the runs (``compare``); ``outputs`` reads their curves back and writes the
figure and the tables.
"""

from stacey_lightning.compare.runs import Comparison, RunResult, StepClock, compare

__all__ = ["compare", "Comparison", "RunResult", "StepClock"]
