"""Opening a study: created or loaded in its storage, with the sampler and pruner its spec names, and
checked against what the storage already holds under that name."""

from __future__ import annotations

import optuna

from stacey_lightning.attributes import STUDY_OPTIMIZER, STUDY_SPACE
from stacey_lightning.execution.storage import open_storage
from stacey_lightning.search.distributions import FINGERPRINT_FORMAT
from stacey_lightning.search.samplers import make_pruner, make_sampler
from stacey_lightning.study.spec import StudySpec

__all__ = ["open_study"]

FORMAT_KEY = "_format"  # a key of the recorded fingerprint no space has (a space's keys are its own names)


def open_study(spec: StudySpec) -> optuna.Study:
    """Create the study or load it, with the sampler of worker ``spec.worker_index`` and the study's pruner.

    Raises:
        ValueError: the study exists with another direction, tunes another optimizer, or samples another
            search space (a changed range or preset: its anchors, ladder and sampler would mix two spaces).
    """
    storage = open_storage(spec.storage, spec.storage_outage_s)
    existing = next((s for s in optuna.get_all_study_summaries(storage) if s.study_name == spec.study_name), None)
    # A fresh seed per worker and per resume, else resumed or parallel runs repeat the same draws.
    offset = existing.n_trials if existing is not None else 0
    sampler = make_sampler(spec.sampler, spec.seed + 7919 * spec.worker_index + offset, spec.planned_trials)
    pruner = make_pruner(spec.pruner, spec.max_epochs, spec.planned_trials)
    study = optuna.create_study(
        storage=storage,
        study_name=spec.study_name,
        direction=spec.direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    if study.direction.name.lower() != spec.direction:
        raise ValueError(
            f"direction: study {spec.study_name!r} already exists with direction "
            f"{study.direction.name.lower()}, not {spec.direction}; use another study name"
        )
    tuned = study.user_attrs.get(STUDY_OPTIMIZER)
    if tuned is None:
        study.set_user_attr(STUDY_OPTIMIZER, spec.optimizer)
    elif tuned != spec.optimizer:
        raise ValueError(
            f"study {spec.study_name!r} already tunes {tuned}, not {spec.optimizer}; use another study name"
        )
    recorded = study.user_attrs.get(STUDY_SPACE)
    space = {**spec.space.fingerprint(), FORMAT_KEY: FINGERPRINT_FORMAT}
    if recorded is None or recorded.get(FORMAT_KEY) != FINGERPRINT_FORMAT:
        # A new study, one from before spaces were recorded, or one recorded in another format: nothing to
        # compare with, so this space is taken as the study's.
        study.set_user_attr(STUDY_SPACE, space)
    elif recorded != space:
        changed = sorted(key for key in recorded.keys() | space.keys() if recorded.get(key) != space.get(key))
        raise ValueError(
            f"space: study {spec.study_name!r} was started with another search space (changed: "
            f"{', '.join(changed)}); resume it with the space it started with, or use another study name"
        )
    return study
