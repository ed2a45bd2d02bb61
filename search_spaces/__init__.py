"""Named search-space presets for the Stacey tuner, shipped as YAML files in the wheel.

A Stacey preset maps each Stacey hyperparameter to a distribution; ``stacey_lightning.search.space``
reads and validates it. ``baselines.yaml`` holds the spaces of the optimizers Stacey is compared
with (``stacey_lightning.search.baseline_space``). The format is documented in docs/tuning.md and in
``default.yaml``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PRESETS = ("default", "vision", "language")
BASELINES = "baselines"


def preset_path(name: str) -> Path:
    """Return the path of the preset ``name`` (one of PRESETS, or BASELINES)."""
    if name not in (*PRESETS, BASELINES):
        raise ValueError(
            f"Unknown search-space preset {name!r}: choose one of {', '.join(PRESETS)}, "
            "or pass the path of your own YAML file"
        )
    return Path(str(resources.files(__name__).joinpath(f"{name}.yaml")))
