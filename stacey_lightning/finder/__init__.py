"""The geometry finder: Stacey's p, lr and tau for a model in about 1.5 training runs, as Lightning's
``Tuner.lr_find`` suggests an lr. ``find_geometry`` works on a model; ``find_for_task`` on a task as
``stacey-find`` names it.

Modules: ``procedure`` (the range tests, the confirmation runs, the pick, and the reasons for each),
``result`` (``FinderResult``: its table, figure and files), ``_recorder`` (the callback of every short
run: each step's lr, the losses, when to stop) and ``_snapshot`` (the model kept as it was given and
given back, as lr_find does).
"""

from stacey_lightning.finder.procedure import (
    FACTORS,
    P_CANDIDATES,
    RUNS,
    STEP_RANGE,
    find_cliff,
    find_for_task,
    find_geometry,
    smooth,
)
from stacey_lightning.finder.result import Confirmation, FinderResult, RangeTest

__all__ = [
    "find_geometry",
    "find_for_task",
    "find_cliff",
    "smooth",
    "FinderResult",
    "RangeTest",
    "Confirmation",
    "P_CANDIDATES",
    "STEP_RANGE",
    "RUNS",
    "FACTORS",
]
