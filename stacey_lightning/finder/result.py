"""What ``find_geometry`` returns: every range test and confirmation run, the pick, and how it shows them:
a Markdown table, lr_find's figure (drawn into a given matplotlib Axes, or a Figure that pyplot does not
hold) and the files ``stacey-find`` writes (``best.yaml``, ``finder.png``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacey_lightning.lightning.config import StaceyConfig
from stacey_lightning.search.space import coordinate_scale

__all__ = ["FinderResult", "RangeTest", "Confirmation"]


def p_text(p: float) -> str:
    return "inf" if p == math.inf else f"{p:g}"


def number_text(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


@dataclass
class RangeTest:
    """One candidate p's range test: the lr and training loss of each step taken, and what was read off."""

    p: float
    lrs: list[float]
    losses: list[float]
    smoothed: list[float] = field(default_factory=list)
    cliff: int | None = None  # index into lrs
    gradient_scale: float | None = None  # c99 measured at the edge
    edge_step: float | None = None  # the coordinate step at the cliff (or the ladder's top, without one)
    pick_step: float | None = None  # edge_step / the factor the confirmations chose
    pick_lr: float | None = None  # the lr of pick_step at the latest c99

    @property
    def cliff_lr(self) -> float | None:
        return None if self.cliff is None else self.lrs[self.cliff]

    @property
    def lowest(self) -> float:
        """The lowest smoothed loss the test reached (inf without any)."""
        return min(self.smoothed, default=math.inf)


@dataclass
class Confirmation:
    """A candidate trained at constant lr: its losses, final training loss (mean of the last tenth), whether
    it stayed down, and its score: the monitored validation metric, or without a monitor the final loss."""

    p: float
    lr: float
    step: float  # the coordinate step: the range test's edge_step / factor
    factor: float
    losses: list[float]
    final: float
    stable: bool
    score: float
    gradient_scale: float | None  # c99 at the run's end
    norm: str = "lp"  # "spectral": the hidden matrices (and convolutions) in the spectral norm, the rest at p

    @property
    def geometry(self) -> str:
        return p_text(self.p) if self.norm == "lp" else f"spectral, rest {p_text(self.p)}"


@dataclass
class FinderResult:
    """What ``find_geometry`` found and how: the config to use, every test, the steps spent."""

    config: StaceyConfig
    gradient_scale: float | None
    range_tests: list[RangeTest]
    confirmations: list[Confirmation]
    steps_used: int
    budget: int
    steps_per_epoch: int
    max_epochs: int
    runs: float  # the budget, in training runs of max_epochs
    monitor: str | None = None
    relative: bool = False  # the range tests' losses read over each batch's loss at the initial weights

    @property
    def p(self) -> float:
        return self.config.p

    @property
    def lr(self) -> float:
        return self.config.lr

    @property
    def geometry(self) -> str:
        """The pick's p and the kinds it puts in the spectral norm: "p inf, matrix spectral, conv spectral"."""
        spectral = [kind for kind, overrides in self.config.kinds.items() if overrides.get("norm") == "spectral"]
        return f"p {p_text(self.p)}" + "".join(f", {kind} spectral" for kind in spectral)

    def table(self) -> str:
        """Markdown: the range tests (per p: the cliff and the pick), the confirmation runs, the pick and the
        steps spent."""
        lowest = "lowest loss over the reference's" if self.relative else "lowest loss"
        lines = [
            f"| p | steps | cliff lr | cliff step | c99 | {lowest} | pick lr |",
            "|---|---|---|---|---|---|---|",
        ]
        for test in self.range_tests:
            cells = [p_text(test.p), str(len(test.lrs)), number_text(test.cliff_lr), number_text(test.edge_step)]
            cells += [number_text(test.gradient_scale), f"{test.lowest:.4g}", number_text(test.pick_lr)]
            lines.append("| " + " | ".join(cells) + " |")
        if self.confirmations:
            score = self.monitor or "final loss"
            lines += [
                "",
                f"| p | lr | step | cliff / | steps | final training loss | {score} |",
                "|---|---|---|---|---|---|---|",
            ]
            for confirmation in self.confirmations:
                final = f"{confirmation.final:.4g}" + ("" if confirmation.stable else " (unstable)")
                cells = [confirmation.geometry, f"{confirmation.lr:.3g}", f"{confirmation.step:.3g}"]
                cells += [f"{confirmation.factor:g}", str(len(confirmation.losses)), final, f"{confirmation.score:.4g}"]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append(
            f"\npick: {self.geometry}, lr {self.lr:.3g}, "
            f"tau_horizon {self.config.tau_horizon:g}, alpha 0; "
            f"{self.steps_used} optimizer steps of a budget of {self.budget} "
            f"({self.runs:g} runs of {self.max_epochs} epochs x {self.steps_per_epoch} steps)"
        )
        return "\n".join(lines)

    def write(self, output_dir: str | os.PathLike, header: str = "") -> dict[str, Path]:
        """Write ``best.yaml`` (the config, as the tuner writes it: ``set_stacey_config`` and ``stacey-compare
        --config`` load it) and ``finder.png`` (``plot()``) into ``output_dir``. Returns the paths by name."""
        import yaml

        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        best = output / "best.yaml"
        comment = (
            f"# geometry finder{header}: p = {p_text(self.p)}, lr = {self.lr:.4g}; "
            f"{self.steps_used} of {self.budget} optimizer steps\n"
        )
        best.write_text(comment + yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        figure = output / "finder.png"
        self.plot().savefig(figure, dpi=100)
        return {"best.yaml": best, "finder.png": figure}

    def plot(self, ax: Any = None) -> Any:
        """lr_find's figure for every candidate p: the smoothed loss against the coordinate step, the cliff
        and the pick marked (dotted per p, solid for the chosen p).

        Args:
            ax: the matplotlib Axes to draw into; None draws into a new ``matplotlib.figure.Figure``, which
                no pyplot state holds (no window opens, the backend is left as it is).

        Returns:
            The Figure drawn into (``ax.figure`` where ``ax`` is given): ``.savefig(path)`` writes it.
        """
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(7, 4.5), layout="tight").add_subplot()
        for test in self.range_tests:
            if not test.smoothed:
                continue
            # Each test's lr as a coordinate step with its own c99: the cliffs of all p line up there.
            to_step = coordinate_scale(test.gradient_scale or 1.0, test.p)
            steps = [lr * to_step for lr in test.lrs[: len(test.smoothed)]]
            (line,) = ax.plot(steps, test.smoothed, label=f"p = {p_text(test.p)}")
            if test.cliff is not None:
                ax.plot(steps[test.cliff], test.smoothed[test.cliff], "v", color=line.get_color())
            if test.pick_step is not None:
                chosen = test.p == self.p
                ax.axvline(
                    test.pick_step,
                    color="black" if chosen else line.get_color(),
                    linestyle="-" if chosen else ":",
                    linewidth=1.5 if chosen else 1,
                    label=f"pick: p = {p_text(self.p)}, lr = {self.lr:.3g}" if chosen else None,
                )
        ax.set_xscale("log")
        ax.set_xlabel("coordinate step lr * c99^(1/(p-1))  (Lion's lr at p = inf)")
        relative = " over its batch's at the initial weights" if self.relative else ""
        ax.set_ylabel(f"training loss{relative} (smoothed)")
        ax.set_title("Stacey geometry finder: range tests (▼ cliff, dotted: pick per p)")
        finite = [value for test in self.range_tests for value in test.smoothed if math.isfinite(value)]
        if finite:
            top = max(test.smoothed[0] for test in self.range_tests if test.smoothed)
            ax.set_ylim(min(finite) - 0.05 * (top - min(finite)), top + 0.2 * (top - min(finite)))
        ax.legend(fontsize=8)
        return ax.figure
