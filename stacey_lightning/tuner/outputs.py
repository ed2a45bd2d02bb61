"""What a study shows and writes: one progress line per trial, ``best.yaml``, the table of the best trials.

``best.yaml`` holds the best trial's optimizer config (for Stacey, a StaceyConfig mapping, loadable
by ``set_stacey_config``) and, under ``task``, the parameters the task's own ``make`` sampled, which
``stacey-compare --config best.yaml`` hands back to ``make`` to rebuild the same model.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.attributes import ANCHOR, CONFIRMS, FAIL_REASON, SURPLUS, TASK_PARAMS, TRIAL_SEED
from stacey_lightning.lightning.config import CHECKPOINT_SECTION, CONFIRMATION_SECTION, TASK_SECTION
from stacey_lightning.study.budget import epochs_spent
from stacey_lightning.study.confirm import search_trials, winner
from stacey_lightning.study.places import finished
from stacey_lightning.study.spec import StudySpec
from stacey_lightning.tuner import best_checkpoint
from stacey_lightning.tuner.trial import Outcome, flat_config, trial_options

__all__ = ["progress_line", "spent_text", "write_best", "check_folder_owner", "summary_table", "quiet_libraries"]

# best.yaml's first line names the study whose best trial it holds (write_best).
_BEST_HEADER = re.compile(r"# best trial #\d+ of study ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"): ")

_ALWAYS = ("p", "lr", "alpha")  # Stacey's columns even where a space fixes them


def _number(value: Any) -> str:
    if isinstance(value, str) and value == "inf":
        return "inf"
    if isinstance(value, float):
        return "inf" if value == math.inf else f"{value:.3g}"
    return str(value)


def _row(trial: FrozenTrial) -> dict[str, Any]:
    row = flat_config(trial_options(trial))
    row.update({f"task.{name}": value for name, value in trial.user_attrs.get(TASK_PARAMS, {}).items()})
    return row


def spent_text(trials: list[FrozenTrial], spec: StudySpec) -> str:
    """``k of N trials finished`` (without a budget) or ``k trials finished, E of B epochs trained``."""
    if spec.budget is None:
        return f"{finished(trials)} of {spec.n_trials} trials finished"
    return f"{finished(trials)} trials finished, {epochs_spent(trials)} of {spec.budget} epochs trained"


def progress_line(study: optuna.Study, number: int, outcome: Outcome, spec: StudySpec) -> str:
    """``trial k of N (#n STATE, metric = v | reason), best so far ...``; with a budget,
    ``trial k, E of B epochs (...)``."""
    trials = study.get_trials(deepcopy=False)
    if spec.budget is None:
        line = f"[stacey-tune] trial {finished(trials)} of {spec.n_trials}"
    else:
        line = f"[stacey-tune] trial {finished(trials)}, {epochs_spent(trials)} of {spec.budget} epochs"
    line += f" (#{number} {outcome.state.name}"
    anchor = trials[number].user_attrs.get(ANCHOR)
    if anchor:
        line += f", anchor {anchor}"
    if CONFIRMS in trials[number].user_attrs:
        line += f", confirms #{trials[number].user_attrs[CONFIRMS]} on seed {trials[number].user_attrs[TRIAL_SEED]}"
    if outcome.value is not None and outcome.state == TrialState.COMPLETE:
        line += f", {spec.monitor} = {outcome.value:.4g}"
    elif outcome.reason:
        line += f": {outcome.reason}"
    line += ")"
    chosen = winner(study)
    if chosen is not None:
        line += f", best so far {chosen.text()} (#{chosen.trial.number}{_geometry(trial_options(chosen.trial))})"
    return line


def _geometry(options: dict) -> str:
    """ ", p = 4" for a Stacey trial in the l_p norm, ", norm adam" in another (its p is unused), "" for a baseline."""
    if options.get("norm", "lp") != "lp":
        return f", norm {options['norm']}"
    return "" if options.get("p") is None else f", p = {_number(options['p'])}"


def check_folder_owner(output_dir: Path, study_name: str) -> None:
    """Refuse to start study ``study_name`` in a folder whose ``best.yaml`` or ``best.ckpt`` another study
    wrote: the new study's best would replace them, and with them the other study's model.

    Raises:
        ValueError: one line naming the folder, the study it holds and what to do.
    """
    owners = {best_checkpoint.kept_study(output_dir)}
    best = Path(output_dir) / "best.yaml"
    if best.is_file():
        with best.open() as handle:
            match = _BEST_HEADER.match(handle.readline())
        owners.add(ast.literal_eval(match.group(1)) if match else None)
    others = sorted(name for name in owners - {None, study_name})
    if others:
        raise ValueError(
            f"output_dir: {output_dir} holds the best.yaml and best.ckpt of study {others[0]!r}; give study "
            f"{study_name!r} a folder of its own (--output), or resume that study (--study-name {others[0]})"
        )


def write_best(study: optuna.Study, output_dir: Path, monitor: str) -> Path | None:
    """Write ``output_dir/best.yaml`` from the best completed trial; None (and a line) if none completed.

    ``best.yaml`` names ``best.ckpt`` (``checkpoint: {path, trial}``) only when it holds that trial's model.
    """
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        print("[stacey-tune] no trial has completed yet: best.yaml not written", flush=True)
        return None
    chosen = winner(study)
    best = chosen.trial
    content = dict(trial_options(best))
    task_params = best.user_attrs.get(TASK_PARAMS)
    if task_params:
        content[TASK_SECTION] = dict(task_params)
    if chosen.confirmed:
        std = chosen.std
        content[CONFIRMATION_SECTION] = {
            "values": [float(value) for value in chosen.values],
            "failed": chosen.failed,
            "mean": float(chosen.mean),
            "std": None if std is None else float(std),
        }
    kept = best_checkpoint.kept_trial(output_dir, study.study_name)
    if kept == best.number:
        content[CHECKPOINT_SECTION] = {"path": best_checkpoint.BEST, "trial": best.number}
    path = output_dir / "best.yaml"
    ranking = f" ({chosen.ranking()})" if chosen.ranking() else ""
    header = f"# best trial #{best.number} of study {study.study_name!r}: {monitor} = {chosen.text(6)}{ranking}\n"
    path.write_text(header + yaml.safe_dump(content, sort_keys=False))
    model = output_dir / best_checkpoint.BEST
    if kept == best.number:
        written = f"config written to {path}, model to {model}"
    elif kept is not None:
        written = f"config written to {path}; {model} holds trial #{kept}'s model (the best one's was not kept here)"
    else:
        written = f"config written to {path} (its model was not kept here)"
    print(f"[stacey-tune] best trial #{best.number}: {monitor} = {chosen.text()}{ranking}; {written}", flush=True)
    return path


def summary_table(study: optuna.Study, monitor: str, top: int = 5) -> str:
    """A Markdown table of the ``top`` best completed trials, then the trials by state.

    Columns: the trial, the anchor it ran (if any), every p the configs set (global and per kind),
    lr, alpha, tau, every other config key or task parameter that varies between the study's trials,
    and the metric.
    """
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    complete = sorted(
        (t for t in search_trials(trials) if t.state == TrialState.COMPLETE),
        key=lambda t: t.value,
        reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE,
    )
    rows = {t.number: _row(t) for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    keys: list[str] = []
    for row in rows.values():
        keys += [key for key in row if key not in keys]
    varying = [key for key in keys if len({repr(row.get(key)) for row in rows.values()}) > 1]
    p_columns = [key for key in keys if key == "p" or key.endswith(".p")]
    columns = [*p_columns, *(key for key in _ALWAYS[1:] if key in keys)]
    columns += [key for key in varying if key not in columns]
    show_anchor = any(t.user_attrs.get(ANCHOR) for t in complete[:top])
    header = ["trial", *(["anchor"] if show_anchor else []), *columns, monitor]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trial in complete[:top]:
        cells = [str(trial.number), *([trial.user_attrs.get(ANCHOR, "")] if show_anchor else [])]
        cells += [_number(rows[trial.number].get(key, "")) for key in columns]
        lines.append("| " + " | ".join(cells + [f"{trial.value:.4g}"]) + " |")
    counts = {state.name: sum(1 for t in trials if t.state == state) for state in TrialState}
    lines.append(
        "trials: "
        + ", ".join(f"{count} {name}" for name, count in counts.items() if count)
        + f"; {epochs_spent(trials)} epochs trained"
    )
    chosen = winner(study)
    if chosen is not None and (chosen.confirmed or chosen.ranking()):
        how = ["confirmed on other seeds"] if chosen.confirmed else []
        how += [chosen.ranking()] if chosen.ranking() else []
        lines.append(f"winner: trial {chosen.trial.number}, {monitor} {chosen.text()} ({'; '.join(how)})")
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(FAIL_REASON)]
    if failed:
        last = failed[-1]
        lines.append(f"last failure: trial {last.number}: {last.user_attrs[FAIL_REASON]}")
    return "\n".join(lines)


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """One progress line per trial instead of Lightning's and Optuna's per-fit and per-trial chatter."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    verbosity = optuna.logging.get_verbosity()
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Heartbeats and fail_stale_trials are used on purpose, with ask/tell instead of optimize.
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            warnings.filterwarnings("ignore", message=".*fail_stale_trials is experimental")
            # Printed by Lightning on every fit; about Lightning's own use of torch, nothing a user can act on.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        optuna.logging.set_verbosity(verbosity)
