"""The model a study ends with: the best trial's final Lightning checkpoint, kept as ``<output>/best.ckpt``.

A search trial that trains to its end (not pruned, loss finite) saves one full checkpoint (weights,
optimizer and scheduler state, loops, hyperparameters) at the end of training, on every rank:
``FinalCheckpoint`` calls ``trainer.save_checkpoint``, a collective that plain DDP writes from rank 0 and
FSDP2 writes as a folder of shards, to ``<output>/checkpoints/<study>/trial-<n>.ckpt``. After a trial is
told, its worker calls ``settle``, the one place that decides which model is kept, from the storage
alone: the trial the study ends with (``confirm.winner``, direction aware: the best trial, or after the
confirmation runs the candidate with the best mean) gets ``best.ckpt``, through ``os.replace``; every
other finished trial's checkpoint is deleted, but for the confirmation candidates' until their runs are
done. So the disk holds ``best.ckpt``, at most two more candidates' checkpoints (``confirm.plan``) while
the study runs, and per worker the checkpoint of the trial it is finishing; a resumed study replaces its
earlier best only by a better trial.

Plain files rather than Optuna's artifact store: the store keeps every upload (one file each) until it
is removed by hand, holds no folder (an FSDP2 checkpoint is one), and gives back a copy, while the user
wants a path next to ``best.yaml`` for ``load_from_checkpoint`` or ``Trainer.fit(ckpt_path=...)``.

Which trial ``best.ckpt`` holds is recorded next to it (``checkpoints/best.json``, written after each
replacement), so that ``best.yaml`` names the checkpoint only when it holds the best trial: a study whose
best trial ran on another machine (each with its own output folder) keeps here the best of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from lightning.pytorch import Callback, LightningModule, Trainer
from typing_extensions import override

from stacey_lightning.study import confirm
from stacey_lightning.study.confirm import Winner
from stacey_lightning.study.spec import StudySpec
from stacey_lightning.tuner.pruning import StaceyPruning

__all__ = ["BEST", "FinalCheckpoint", "trial_checkpoint", "settle", "kept_trial", "kept_study"]

BEST = "best.ckpt"  # in the output folder; a folder itself under FSDP2 (a distributed checkpoint)
CHECKPOINTS = "checkpoints"
_RECORD = "best.json"  # in CHECKPOINTS: {"study": name, "trial": number, "value": value} of best.ckpt
_LOCK = ".lock"
_WAITING = re.compile(r"trial-(\d+)\.ckpt")


def trial_checkpoint(output_dir: Path, study_name: str, number: int) -> Path:
    """Where trial ``number`` saves its final checkpoint until ``settle`` keeps or deletes it."""
    return Path(output_dir) / CHECKPOINTS / study_name / f"trial-{number}.ckpt"


class FinalCheckpoint(Callback):
    """Save the fit's final state to ``path`` at the end of training, on every rank, unless ``StaceyPruning``
    stopped the run (pruned, non-finite loss): a pruned trial never produces a model.

    At the end of training rather than after ``fit`` returns: under ``ddp_spawn`` the process that called
    ``fit`` has the weights back but not the optimizer state, which lives in the spawned ranks.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if any(isinstance(callback, StaceyPruning) and callback.stop_reason for callback in trainer.callbacks):
            return
        trainer.save_checkpoint(self.path)


def settle(study: optuna.Study, spec: StudySpec) -> Winner | None:
    """Bring ``<output>/best.ckpt`` up to date with the storage; call it after a trial is told.

    Under a file lock (worker processes of one output folder race here), reads the trials from the
    storage. The trial the study ends with (``confirm.winner``: the best search trial, or after the
    confirmation runs the candidate with the best mean) gets ``best.ckpt`` if its checkpoint waits. The
    waiting checkpoints of the other finished trials are deleted, except those of the confirmation
    candidates while their confirmation runs are still to come (one of them may yet win); those of
    running trials are left to their workers.

    Returns:
        The winner, if ``best.ckpt`` changed to its model; else None.
    """
    output_dir = Path(spec.output_dir)
    waiting = output_dir / CHECKPOINTS / study.study_name
    if not waiting.is_dir():
        return None
    changed = None
    with FileLock(output_dir / CHECKPOINTS / _LOCK):  # across processes: flock on POSIX, msvcrt on Windows
        trials = study.get_trials(deepcopy=False)
        chosen = confirm.winner(study)
        needed = confirm.open_candidates(spec, trials) | ({chosen.trial.number} if chosen is not None else set())
        holder = kept_trial(output_dir, study.study_name)
        if chosen is not None and chosen.trial.number != holder:
            candidate = trial_checkpoint(output_dir, study.study_name, chosen.trial.number)
            if candidate.exists():
                if holder in needed:  # a candidate that may win back: to the waiting room
                    _replace(output_dir / BEST, trial_checkpoint(output_dir, study.study_name, holder))
                _replace(candidate, output_dir / BEST)
                record = {"study": study.study_name, "trial": chosen.trial.number, "value": chosen.trial.value}
                _write_record(output_dir, record)
                changed = chosen
        for path in sorted(waiting.iterdir()):
            match = _WAITING.fullmatch(path.name)
            number = int(match.group(1)) if match else None
            if number is not None and number < len(trials) and trials[number].state.is_finished():
                if number not in needed:
                    _remove(path)
    return changed


def kept_trial(output_dir: Path, study_name: str) -> int | None:
    """The number of the trial of ``study_name`` whose model ``<output_dir>/best.ckpt`` holds, or None."""
    record = _record(output_dir)
    return record["trial"] if record is not None and record.get("study") == study_name else None


def kept_study(output_dir: Path) -> str | None:
    """The name of the study whose model ``<output_dir>/best.ckpt`` holds, or None."""
    record = _record(output_dir)
    return None if record is None else record.get("study")


def _record(output_dir: Path) -> dict[str, Any] | None:
    record_path = Path(output_dir) / CHECKPOINTS / _RECORD
    if not (Path(output_dir) / BEST).exists() or not record_path.is_file():
        return None
    return json.loads(record_path.read_text())


def _replace(source: Path, target: Path) -> None:
    """Move ``source`` (a file, or an FSDP2 checkpoint folder) to ``target``, replacing what is there.

    A file replaces a file atomically. ``os.replace`` cannot put a folder over an existing one, so the
    old one is moved aside first and deleted after: for that moment there is no ``target``.
    """
    if source.is_dir() or target.is_dir():
        aside = target.with_name(target.name + ".old")
        _remove(aside)
        if target.exists():
            os.replace(target, aside)
        os.replace(source, target)
        _remove(aside)
    else:
        os.replace(source, target)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_record(output_dir: Path, record: dict[str, Any]) -> None:
    path = output_dir / CHECKPOINTS / _RECORD
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record) + "\n")
    os.replace(temporary, path)
