"""Where a study's anchors should start: each geometry's anchor (``search.anchors``) trained whole at two or more
middle steps, one seed, on the development workloads named, with the workload's own metric. It decided the
language preset's ``anchor_step`` (benchmarks/results/suite_dev.md, "Round 10").

The step of a finite-p anchor becomes an lr through the gradient's scale that a study measures on its first trial;
so each workload first runs a study of one trial (its first anchor, as every study begins) and the configs take
the scale that trial recorded.

    python -m benchmarks.suite.anchor_steps --workloads stdlib-gru,stdlib-transformer-narrow
    python -m benchmarks.suite.anchor_steps --workloads cancer-mlp,digits-cnn --ladders centre --steps 1e-3,3e-3
"""

from __future__ import annotations

import argparse
import itertools
import tempfile

from benchmarks.suite.registry import DEV, select
from benchmarks.suite.run import train_config

LADDERS = ("muon-like", "lion-like", "centre", "sgd-like", "muon-lion-like")


def _numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(",") if value.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", required=True, help="comma-separated dev workloads")
    parser.add_argument("--ladders", default=",".join(LADDERS), help=f"comma-separated, of {', '.join(LADDERS)}")
    parser.add_argument(
        "--steps", type=_numbers, default=[1e-3, 3e-3], help="middle steps (the SGD-like anchor at 0.3 of each)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the seed of every run (default: the tuning seed, 0)")
    arguments = parser.parse_args(argv)
    unknown = set(arguments.ladders.split(",")) - set(LADDERS)
    if unknown:
        parser.error(f"--ladders: unknown {', '.join(sorted(unknown))} (choose from {', '.join(LADDERS)})")
    import optuna
    import torch

    from stacey_lightning.attributes import GRADIENT_SCALE
    from stacey_lightning.search.anchors import LION_STEP, stacey_ladders
    from stacey_lightning.search.space import SearchSpace
    from stacey_lightning.tuner.tuning import tune

    torch.set_num_threads(1)
    for workload in select(DEV, arguments.workloads.split(",")):
        settings = dict(max_epochs=workload.epochs, monitor=workload.monitor, direction=workload.direction)
        with tempfile.TemporaryDirectory() as folder:
            study = tune(workload.task, space=workload.space, n_trials=1, confirm=False, output_dir=folder,
                         seed=arguments.seed, **settings)  # fmt: skip
        scale = study.trials[0].user_attrs[GRADIENT_SCALE]
        space = SearchSpace.load(workload.space)
        ladders = {ladder.name: ladder for ladder in stacey_ladders(space)}
        for name, step in itertools.product(arguments.ladders.split(","), arguments.steps):
            ladder = ladders[name]
            rung = ladder.rung(ladder.middle * step / (space.anchor_step or LION_STEP))
            config = space.sample_config(optuna.trial.FixedTrial(space.params_for(rung.values)), scale)
            (final,) = train_config(workload, config, [arguments.seed])
            print(f"{workload.name} {rung.name} (anchors at {step:g}; p {config['p']}, lr {config['lr']:.3g}, gradient "
                  f"scale {scale:.3g}): {workload.monitor} {final:.4f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
