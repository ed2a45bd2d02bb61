"""Does Stacey's coupling help in the spectral norm? Stacey's Muon-like point (spectral matrices, p = inf
elsewhere) at a few steps, with tau = 0 (Muon's special case) and with a pull towards z (tau_horizon H:
tau = 1 / (H * T), so tau * T = 1 / H), against torch's Muon (``muon``: Muon on hidden matrices, AdamW on
the rest) at a few learning rates, all in the same run, interleaved by seed.

A diagnosis, not a search: it names no default. It asks where a study's loss to tuned Muon comes from: the
step its anchors reach, or the geometry and coupling.

    python benchmarks/spectral_coupling.py --task textlm --steps 1e-3,3e-3 --horizons inf,1,0.33 --muon-lrs 3e-3,9e-3
    python benchmarks/spectral_coupling.py --smoke                  # seconds: checks that the script works
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _report import add_threads_argument, run_benchmark
from quality import TASKS, run_settings

RESULTS = Path(__file__).resolve().parent / "results" / "spectral_coupling.md"


def _numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",") if value.strip()]


def stacey_config(
    step: float, horizon: float, space: str, rest: float = 1.0, beta2: float | None = None
) -> dict[str, Any]:
    """The Muon-lion-like ladder's rung (the sign-like rest this script measured, round 4) at coordinate step
    ``step`` (the rest of the model at ``rest`` times it,
    where the space lets the matrices step apart) with ``tau_horizon`` = ``horizon``, at the momentum's
    ``beta2`` (default: the rung's, Muon's 0.95)."""
    import optuna

    from stacey_lightning.search.anchors import stacey_ladders
    from stacey_lightning.search.space import SearchSpace

    loaded = SearchSpace.load(space)
    muon = next(ladder for ladder in stacey_ladders(loaded) if ladder.name == "muon-lion-like")
    values = {**muon.rung(step, rest).values, "tau_horizon": horizon}
    if beta2 is not None:
        values["beta2"] = beta2
    if math.isfinite(horizon):
        values.pop("tau")  # tau follows from the horizon and the run's steps
    config = loaded.sample_config(optuna.trial.FixedTrial(loaded.params_for(values)))
    if beta2 is not None and "beta2" not in loaded.distributions:
        config["betas"] = [config["betas"][0], beta2]  # a space with fixed betas
    return config


def _embedding_scaled(config: dict[str, Any], scale: float) -> dict[str, Any]:
    """``config`` with its embeddings' step ``scale`` times their own (the kind's lr_scale)."""
    embedding = config["kinds"]["embedding"]
    return {
        **config,
        "kinds": {**config["kinds"], "embedding": {**embedding, "lr_scale": embedding["lr_scale"] * scale}},
    }


def measure(arguments: argparse.Namespace, workdir: Path) -> dict[str, list[float]]:
    from stacey_lightning.compare import compare
    from stacey_lightning.tasks import resolve_task

    settings = TASKS[arguments.task]
    options, max_epochs, trainer_kwargs = run_settings(arguments.task, arguments.smoke)
    space = resolve_task(settings["task"]).space
    finals: dict[str, list[float]] = {}
    for seed in range(arguments.seeds):  # interleaved: every configuration once per seed before the next seed
        runs = [(f"stacey muon-like step {step:g}, tau_horizon {horizon:g}", "stacey",
                 {"config": stacey_config(step, horizon, space)}) for step in arguments.steps
                for horizon in arguments.horizons]  # fmt: skip
        runs += [(f"stacey muon-like step {step:g}, tau_horizon {horizon:g}, embedding step x{scale:g}", "stacey",
                  {"config": _embedding_scaled(stacey_config(step, horizon, space), scale)})
                 for step in arguments.steps for horizon in arguments.horizons
                 for scale in arguments.embedding_scales]  # fmt: skip
        runs += [(f"stacey muon-like step {step:g}, tau_horizon {horizon:g}, rest x{rest:g}, beta2 {beta2:g}", "stacey",
                  {"config": stacey_config(step, horizon, space, rest, beta2)})
                 for step in arguments.steps for horizon in arguments.horizons
                 for rest in arguments.rest_scales for beta2 in arguments.beta2s]  # fmt: skip
        runs += [(f"muon lr {lr:g}", "muon", {"optimizer_options": {"muon": {"lr": lr}}}) for lr in arguments.muon_lrs]
        for label, optimizer, chosen in runs:
            with tempfile.TemporaryDirectory(dir=workdir) as folder:
                result = compare(settings["task"], [optimizer], [seed], max_epochs=max_epochs, output_dir=folder,
                                 trainer_kwargs=trainer_kwargs, task_options=options, **chosen)  # fmt: skip
            finals.setdefault(label, []).append(result.runs[0].final_metric)
            print(f"[spectral_coupling] seed {seed} {label}: {result.monitor} {finals[label][-1]:.4f}", flush=True)
    return finals


def render(arguments: argparse.Namespace, finals: dict[str, list[float]]) -> str:
    from stacey_lightning.compare.results import summarize
    from stacey_lightning.tasks import resolve_task

    monitor = resolve_task(TASKS[arguments.task]["task"]).monitor
    _, epochs, _ = run_settings(arguments.task, arguments.smoke)
    muon = [statistics.fmean(v) for k, v in finals.items() if k.startswith("muon")]
    against = f" against the best Muon row ({min(muon):.4f}) |" if muon else ""  # none where --muon-lrs ""
    lines = [
        f"## {arguments.task}: {monitor} (lower is better), {arguments.seeds} seeds, {epochs} epochs per run",
        "",
        f"| configuration | final {monitor} (mean ± std) | per seed |{against}",
        "|---|---|---|" + ("---|" if muon else ""),
    ]
    for label, values in finals.items():
        per_seed = ", ".join(f"{value:.4f}" for value in values)
        gap = f" {statistics.fmean(values) - min(muon):+.4f} |" if muon else ""
        lines.append(f"| {label} | {summarize(values).text()} | {per_seed} |{gap}")
    return "\n".join(lines)


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="textlm", choices=sorted(TASKS))
    parser.add_argument("--steps", type=_numbers, default=[1e-3, 3e-3], help="Stacey's coordinate steps")
    parser.add_argument("--horizons", type=_numbers, default=[math.inf, 1.0, 0.33], help="tau_horizon values")
    parser.add_argument(
        "--muon-lrs", type=_numbers, default=[3e-3, 9e-3], help='torch Muon\'s learning rates; "" for none'
    )
    parser.add_argument(
        "--embedding-scales", type=_numbers, default=[], help="also each config with its embeddings' step times these"
    )
    parser.add_argument(
        "--rest-scales", type=_numbers, default=[], help="also each config with the rest's step times these (--beta2s)"
    )
    parser.add_argument("--beta2s", type=_numbers, default=[], help="the momentum's beta2 of the --rest-scales runs")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="a tiny model, 1 epoch of 2 batches, 1 seed")
    add_threads_argument(parser)
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.seeds, arguments.steps, arguments.horizons, arguments.muon_lrs = 1, [1e-3], [math.inf, 1.0], [3e-3]
    return arguments


def main(argv: list[str] | None = None) -> str:
    title = "Stacey's coupling in the spectral norm, against torch's Muon"
    return run_benchmark("spectral_coupling.py", title, argv, parse_arguments, measure, render)


if __name__ == "__main__":
    main()
