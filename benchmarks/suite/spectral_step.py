"""The spectral step on the development half: Stacey's Muon-like anchor (spectral matrices, p = inf
elsewhere, tau = 0) trained whole at coordinate steps 1e-3 (its middle rung), 3e-3 and 9e-3, one seed, on
the dev workloads named. It decided where Muon's upper rung sits among Stacey's anchors (search/anchors.py).
With ``--horizons``, each step also with Stacey's pull towards z (tau_horizon H: tau * T = 1 / H, alpha as
the anchor's). With ``--rest-scales K``, everything outside the spectral matrices (embeddings, head, vectors)
steps K times the matrices' step, as Muon's AdamW does at its lr (five times its matrices' update RMS); with
``--beta2s``, the momentum's beta2 (Muon's momentum is 0.95, the presets' beta2 0.99). Prints each
workload's validation loss (val_loss, the loss the module logs) per step.

    python -m benchmarks.suite.spectral_step --workloads stdlib-gru,stdlib-transformer-narrow,recall-transformer
    python -m benchmarks.suite.spectral_step --workloads stdlib-gru --steps 1e-3,3e-3 --horizons inf,0.5
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile

from benchmarks.suite.registry import DEV, select

STEPS = (1e-3, 3e-3, 9e-3)


def _numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",") if value.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", required=True, help="comma-separated dev workloads")
    parser.add_argument("--steps", type=_numbers, default=list(STEPS), help="coordinate steps")
    parser.add_argument("--horizons", type=_numbers, default=[math.inf], help="tau_horizon values (inf: tau = 0)")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--embedding-scales", type=_numbers, default=[1.0], help="the embeddings' step, times the step")
    parser.add_argument(
        "--rest-scales", type=_numbers, default=[1.0], help="the step outside the spectral kinds, times the step"
    )
    parser.add_argument("--beta2s", type=_numbers, default=[], help="the momentum's beta2 (default: the preset's)")
    arguments = parser.parse_args(argv)
    import optuna
    import torch

    from stacey_lightning.compare import compare
    from stacey_lightning.search.anchors import stacey_ladders
    from stacey_lightning.search.space import SearchSpace

    torch.set_num_threads(1)
    for workload in select(DEV, arguments.workloads.split(",")):
        space = SearchSpace.load(workload.space)
        muon = next(ladder for ladder in stacey_ladders(space) if ladder.name == "muon-like")
        grid = itertools.product(
            arguments.steps, arguments.horizons, arguments.embedding_scales, arguments.rest_scales,
            arguments.beta2s or [None], range(arguments.seeds),
        )  # fmt: skip
        for step, horizon, scale, rest, beta2, seed in grid:
            # The ladder's rung: the matrices at the step, the rest of the model at ``rest`` times it.
            values = {**muon.rung(step, rest).values, "tau_horizon": horizon}
            if math.isfinite(horizon):
                values.pop("tau")  # from the horizon and the run's steps
            config = space.sample_config(optuna.trial.FixedTrial(space.params_for(values)))
            if scale != 1.0 and "embedding" in config["kinds"]:
                config["kinds"]["embedding"]["lr_scale"] *= scale
            if beta2 is not None:
                config["betas"] = [config["betas"][0], beta2]
            with tempfile.TemporaryDirectory() as folder:
                result = compare(workload.task, ["stacey"], [seed], config=config, max_epochs=workload.epochs,
                                 monitor="val_loss", direction="minimize", output_dir=folder)  # fmt: skip
            final = result.runs[0].final_metric
            extra = (f" rest x{rest:g}" if rest != 1.0 else "") + (f" beta2 {beta2:g}" if beta2 is not None else "")
            print(f"{workload.name} muon-like step {step:g} tau_horizon {horizon:g} embedding x{scale:g}{extra} "
                  f"seed {seed}: val_loss {final:.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
