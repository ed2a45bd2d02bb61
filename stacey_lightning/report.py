"""``stacey-report``: Optuna's plots and a Markdown summary of one study, from its storage URL.

Writes, under ``output_dir``, for each plot an interactive HTML file (plotly; ``plotly.min.js`` is
written once next to them, so they open offline) and a PNG (Optuna's matplotlib backend; plotly's
own PNG export needs a browser; the caller's matplotlib backend, style and open figures are left as
they were):

- ``history``: the objective of every trial and the best so far;
- ``importances``: parameter importances (fANOVA; needs two or more completed trials);
- ``p``: the objective against p. The tuner samples p through r = 1/(p-1) (r = 0 is p = inf), so the
  plot is a slice plot on r with its axis labelled in p;
- ``parallel``: parallel coordinates of every parameter and the objective;

and ``summary.md``: the best trial and its config, trials by state, time spent, and which plots were
skipped and why.
"""

from __future__ import annotations

import collections
import datetime
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from stacey_lightning.execution.storage import journal_path, mask_password, open_storage

# The tuner opens storages (RDB URLs and journal:PATH) and masks passwords; the report reads the same way.
from stacey_lightning.study.confirm import winner

__all__ = ["report"]

# p values marked on the r = 1/(p-1) axis of the objective-against-p plot.
_P_TICKS = (2.0, 2.5, 3.0, 4.0, 6.0, math.inf)


def report(
    storage_url: str, study_name: str | None = None, output_dir: str | os.PathLike = "stacey-report"
) -> dict[str, str]:
    """Export the plots and the summary of one study in ``storage_url``.

    Args:
        storage_url: what ``stacey-tune --storage`` takes: ``sqlite:///study.db``,
            ``postgresql://user:password@host/db`` or ``journal:PATH`` (Optuna's journal file).
        study_name: the study to report; may be omitted when the storage holds exactly one.
        output_dir: where the files go. Default ``stacey-report``.

    Returns:
        The paths written, by name ("summary", "history.html", "history.png", ...).

    Raises:
        ValueError: the storage cannot be read or holds no such study, several studies and no
            ``study_name``, or a multi-objective study. Passwords in the URL are masked in messages.
    """
    study = _load_study(storage_url, study_name)
    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    written: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name, (make_html, make_png) in _plots(study).items():
        try:
            html = make_html()
            _write_png(make_png, os.path.join(output_dir, f"{name}.png"))
        except _Skip as reason:
            skipped[name] = str(reason)
            continue
        # "directory": one plotly.min.js beside the pages instead of 3.5 MB inside each, and no network.
        html.write_html(os.path.join(output_dir, f"{name}.html"), include_plotlyjs="directory")
        written[f"{name}.html"] = os.path.join(output_dir, f"{name}.html")
        written[f"{name}.png"] = os.path.join(output_dir, f"{name}.png")
    summary = os.path.join(output_dir, "summary.md")
    with open(summary, "w", encoding="utf-8") as stream:
        stream.write(_summary(study, mask_password(storage_url), skipped))
    written["summary"] = summary
    return written


def _load_study(storage_url: str, study_name: str | None) -> optuna.Study:
    shown = mask_password(storage_url)
    _check_storage_file(storage_url)
    try:
        with warnings.catch_warnings():  # the tuner's heartbeat option is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = open_storage(storage_url)
        names = optuna.get_all_study_names(storage=storage)
    except Exception as error:  # any driver or connection error: say which storage, without its password
        raise ValueError(
            f"Cannot read the Optuna storage {shown}: {type(error).__name__}: {str(error).replace(storage_url, shown)}"
        ) from None
    if not names:
        raise ValueError(f"The storage {shown} holds no study")
    if study_name is None:
        if len(names) > 1:
            raise ValueError(
                f"The storage {shown} holds {len(names)} studies: {', '.join(sorted(names))}; "
                "choose one with --study NAME"
            )
        study_name = names[0]
    elif study_name not in names:
        raise ValueError(f"No study {study_name!r} in {shown}; its studies: {', '.join(sorted(names))}")
    study = optuna.load_study(study_name=study_name, storage=storage)
    if len(study.directions) > 1:
        raise ValueError(
            f"Study {study_name!r} has {len(study.directions)} objectives; stacey-report handles "
            "single-objective studies only"
        )
    return study


def _check_storage_file(storage_url: str) -> None:
    """Optuna would silently create an empty database or journal for a mistyped path; refuse instead."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    path = journal_path(storage_url)
    if path is None:
        try:
            url = make_url(storage_url)
        except ArgumentError:
            return
        if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
            return
        path = url.database
    if not os.path.isfile(path):
        raise ValueError(
            f"No storage file {path!r} (from {mask_password(storage_url)}); check the path: "
            "sqlite:///relative.db, sqlite:////absolute.db or journal:PATH"
        )


class _Skip(Exception):
    """A plot that cannot be drawn for this study; the message says why."""


def _plots(study: optuna.Study) -> dict[str, tuple[Callable, Callable]]:
    """Per plot name, functions making its plotly figure and its matplotlib figure."""
    from optuna import visualization as interactive
    from optuna.visualization import matplotlib as static

    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def needs(count: int) -> None:
        if len(completed) < count:
            raise _Skip(f"needs {count} or more completed trials, the study has {len(completed)}")

    def importances(module) -> Any:
        needs(2)
        varied = {
            name for name in _param_names(completed) if len({repr(trial.params.get(name)) for trial in completed}) > 1
        }
        if not varied:
            raise _Skip("no parameter varies across the completed trials")
        return module.plot_param_importances(study)

    def objective_against_p(module) -> Any:
        needs(1)
        names = [name for name in _param_names(completed) if _is_r(name) or _is_p(name)]
        if not names:
            raise _Skip("the study does not sample p (no parameter named p or r)")
        return _label_p(module.plot_slice(study, params=names))

    def history(module) -> Any:
        needs(1)
        return module.plot_optimization_history(study)

    def parallel(module) -> Any:
        needs(1)
        return module.plot_parallel_coordinate(study)

    def pair(draw: Callable) -> tuple[Callable, Callable]:
        return (lambda: draw(interactive), lambda: _figure_of(_quietly(draw, static)))

    return {
        "history": pair(history),
        "importances": pair(importances),
        "p": pair(objective_against_p),
        "parallel": pair(parallel),
    }


def _quietly(draw: Callable, module) -> Any:
    # Optuna marks its matplotlib backend experimental, and matplotlib warns when one trial makes an
    # axis a single point; neither says anything to a report reader.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Attempting to set identical")
        return draw(module)


def _figure_of(axes: Any) -> Any:
    """The matplotlib Figure behind the Axes (or array of Axes) an Optuna plot returns."""
    return np.ravel(axes)[0].figure


def _write_png(make: Callable[[], Any], path: str) -> None:
    """Draw an Optuna matplotlib figure with ``make`` and save it to ``path``, leaving the caller's session
    as it was: Optuna draws through pyplot, on the backend in use (an Agg-based one, as every interactive
    backend and the default without a display are), and its figures are closed once saved; it sets the
    ggplot style for the whole process, and ``rc_context`` gives the caller's style back."""
    import matplotlib
    import matplotlib.pyplot as plt

    with matplotlib.rc_context():
        open_before = set(plt.get_fignums())
        try:
            make().savefig(path, dpi=100, bbox_inches="tight")
        finally:
            for number in set(plt.get_fignums()) - open_before:
                plt.close(number)


def _param_names(trials: list[FrozenTrial]) -> list[str]:
    return sorted({name for trial in trials for name in trial.params})


def _is_r(name: str) -> bool:
    """Parameters holding r = 1/(p-1): "r", and "kinds.<kind>.r" for per-kind p (see search_space)."""
    return name == "r" or name.endswith(".r")


def _is_p(name: str) -> bool:
    return name == "p" or name.endswith(".p")


def _p_of_r(r: float) -> float:
    return math.inf if r == 0.0 else 1.0 + 1.0 / r


def _p_label(p: float) -> str:
    return "inf" if p == math.inf else f"{p:g}"


def _label_p(figure: Any) -> Any:
    """Relabel every r axis of a slice plot in p, growing to the right, for plotly and matplotlib alike."""
    values = [1.0 / (p - 1.0) if p != math.inf else 0.0 for p in _P_TICKS]
    labels = [_p_label(p) for p in _P_TICKS]
    title = "Objective against p (axis linear in r = 1/(p-1), so 2 to inf is covered evenly)"
    if hasattr(figure, "update_xaxes"):  # plotly
        for key in figure.layout:
            axis = figure.layout[key]
            if key.startswith("xaxis") and axis.title.text and _is_r(axis.title.text):
                axis.update(
                    tickvals=values, ticktext=labels, autorange="reversed", title_text=axis.title.text[:-1] + "p"
                )
        figure.update_layout(title_text=title)
        return figure
    for axes in np.ravel(figure):
        if _is_r(axes.get_xlabel()):
            axes.set_xticks(values, labels)
            axes.invert_xaxis()
            axes.set_xlabel(axes.get_xlabel()[:-1] + "p")
    np.ravel(figure)[0].figure.suptitle(title)
    return figure


def _summary(study: optuna.Study, shown_url: str, skipped: dict[str, str]) -> str:
    trials = study.get_trials(deepcopy=False)
    by_state = collections.Counter(trial.state.name for trial in trials)
    direction = study.direction.name.lower()
    lines = [f"# Study `{study.study_name}`", "", f"Storage: `{shown_url}`  ", f"Direction: {direction}", ""]

    lines += ["## Best trial", ""]
    chosen = winner(study)  # what the study ends with: confirmation runs are not candidates themselves
    if chosen is not None:
        best = chosen.trial
        ranking = f" ({chosen.ranking()})" if chosen.ranking() else ""
        lines += [
            f"Trial {best.number}: objective **{chosen.text(6)}**{ranking}",
            "",
            "| parameter | value |",
            "|---|---|",
        ]
        for name, value in sorted(best.params.items()):
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
            if _is_r(name):
                shown += f" (p = {_p_label(_p_of_r(value))})"
            lines.append(f"| {name} | {shown} |")
        if best.user_attrs:
            lines += [
                "",
                "Recorded with the trial:",
                "",
                "```yaml",
                yaml.safe_dump(_yaml_safe(best.user_attrs), sort_keys=True).rstrip(),
                "```",
            ]
    else:
        lines.append("No completed trial.")

    lines += ["", "## Trials by state", "", "| state | trials |", "|---|---|"]
    lines += [f"| {state} | {count} |" for state, count in sorted(by_state.items())]
    lines += [f"| total | {len(trials)} |"]

    durations = [trial.duration for trial in trials if trial.duration is not None]
    starts = [trial.datetime_start for trial in trials if trial.datetime_start is not None]
    ends = [trial.datetime_complete for trial in trials if trial.datetime_complete is not None]
    lines += ["", "## Time spent", ""]
    lines.append(
        f"- trials, summed: {_duration(sum(durations, datetime.timedelta()))} over {len(durations)} finished trials"
    )
    if starts and ends:
        lines.append(
            f"- wall clock, first start to last finish: {_duration(max(ends) - min(starts))} "
            "(parallel workers make it shorter than the sum)"
        )
    if durations:
        lines.append(f"- median trial: {_duration(sorted(durations)[len(durations) // 2])}")

    if skipped:
        lines += ["", "## Plots not drawn", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def _yaml_safe(value: Any) -> Any:
    """User attributes as plain YAML: p = inf becomes "inf" as in best.yaml, other odd values strings."""
    if isinstance(value, dict):
        return {str(key): _yaml_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(item) for item in value]
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _duration(delta: datetime.timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"
