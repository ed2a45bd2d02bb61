"""The geometry experiments by name, and the command that runs them.

    python -m benchmarks.geometry.experiments --list
    python -m benchmarks.geometry.experiments --run exp1 [--run exp2 ...] [--csv PATH] [--threads N]

Each experiment is a list of runs (``runner.Run``) in ``EXPERIMENTS``; ``--run`` trains the runs not yet in
the CSV (so an interrupted batch restarts where it stopped) and appends one line per run as it finishes.
The section of ``benchmarks/results/geometry.md`` that each experiment feeds is in its description.

Conventions (geometry.md): textlm small, batch 16, 60000 characters, 5 epochs (T = 265 optimizer steps);
betas (0.9, 0.99), eps 1e-8; Lion and Stacey at p = inf, tau = 0 decay every parameter by 0.01, other
Stacey runs decay by lr * weight_decay = 3e-5 per step; seed 0 unless a name says otherwise.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .runner import CSV, Run

__all__ = ["Experiment", "EXPERIMENTS", "main"]

INF = math.inf
LION_WD = 0.01  # Lion's weight decay, on every parameter
WD_PER_STEP = 3e-5  # lr * weight_decay of the other Stacey runs: Lion's 3e-3 * 0.01
T = 265  # optimizer steps of a 5-epoch textlm run (measured)
T_LONG = 1408  # 8 epochs x 176 steps at 200000 characters
C99_DIGITS = 1.88e-3  # 99th percentile of |c| on digits (Lion-like run, step 260)
WARMUP_COSINE = {"name": "warmup_cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.0}
COSINE = {"name": "warmup_cosine", "warmup_fraction": 0.0, "min_lr_ratio": 0.0}  # no warmup
WARMUP_FLAT = {"name": "warmup_cosine", "warmup_fraction": 0.05, "min_lr_ratio": 1.0}  # warmup, then flat
# The config the default study picked on textlm before the presets followed Stacey's dynamics (quality.md).
OLD_TUNED = {
    "p": 2.23,
    "lr": 0.47,
    "alpha": 2.53,
    "tau": 0.0954,
    "weight_decay": 0.00831,
    "kinds": {"embedding": {"p": 7.98, "weight_decay": 0.0}},
}


# Runs -------------------------------------------------------------------------------------------------


def stacey(name: str, seed: int = 0, wd: float = 0.0, wd_vectors: float | None = None, **config: Any) -> Run:
    """A Stacey run on textlm; ``wd_vectors`` decays the vectors too (the mixin spares them by default)."""
    config = {"betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": wd, **config}
    if wd_vectors is not None:
        config["kinds"] = {**config.get("kinds", {}), "vector": {"weight_decay": wd_vectors}}
    return Run(name, "stacey", config, seed=seed)


def lionlike(lr: float, seed: int = 0) -> Run:
    """Stacey at p = inf, tau = 0, alpha = 0: Lion, with Lion's weight decay on every parameter."""
    return stacey(
        f"stacey_inf_tau0_lr{lr:g}_s{seed}", seed=seed, p=INF, tau=0.0, alpha=0.0, lr=lr, wd=LION_WD, wd_vectors=LION_WD
    )


def lp(
    p: float,
    lr: float,
    tau: float = 0.0,
    alpha: float = 0.0,
    seed: int = 0,
    tag: str = "",
    wd_per_step: float = WD_PER_STEP,
) -> Run:
    """Stacey at a finite or infinite p, decaying every parameter by ``wd_per_step`` per step."""
    name = f"stacey_p{p:g}_tau{tau:g}_alpha{alpha:g}_lr{lr:g}{tag}_s{seed}"
    return stacey(name, seed=seed, p=p, lr=lr, tau=tau, alpha=alpha, wd=wd_per_step / lr, wd_vectors=wd_per_step / lr)


def sgdlike(alpha: float, seed: int = 0) -> Run:
    """p = 2, tau = 1, beta1 = beta2: x = z, SGD on an averaged gradient with step alpha. lr would only scale
    the weight decay, which cannot act at tau = 1: no decay, and lr = alpha."""
    return stacey(
        f"stacey_sgdlike_alpha{alpha:g}_s{seed}",
        seed=seed,
        p=2.0,
        tau=1.0,
        alpha=alpha,
        lr=alpha,
        betas=[0.9, 0.9],
        wd=0.0,
    )


def baseline(optimizer: str, lr: float, weight_decay: float, seed: int = 0) -> Run:
    return Run(
        f"{optimizer}_lr{lr:g}_wd{weight_decay:g}_s{seed}",
        optimizer,
        {"lr": lr, "weight_decay": weight_decay},
        seed=seed,
    )


def tau_t(k: float, steps: int = T) -> float:
    """tau = k / T, the pull of x towards z over k horizons of the run."""
    return round(k / steps, 6 if steps == T else 7)


def scheduled(spec: Run, schedule: dict[str, Any], label: str, tau_follows_lr: bool = False) -> Run:
    config = {**spec.config, "schedule": dict(schedule)}
    if tau_follows_lr:
        config["tau_follows_lr"] = True
    return replace(spec, name=f"{spec.name}_{label}", config=config)


def with_schedule(spec: Run, mode: str) -> Run:
    """mode: "const" (no schedule), "wc" (warmup + cosine, tau constant), "wc_tau" (tau follows lr)."""
    if mode == "const":
        return replace(spec, name=f"{spec.name}_const")
    return scheduled(spec, WARMUP_COSINE, mode, tau_follows_lr=mode == "wc_tau")


def on_digits(spec: Run, epochs: int = 10) -> Run:
    return replace(spec, task="digits", epochs=epochs, name=f"digits_{spec.name}")


def long(spec: Run) -> Run:
    """The longer textlm: 200000 characters, 8 epochs (T = 1376 measured)."""
    return replace(spec, epochs=8, max_chars=200_000, name=f"long_{spec.name}")


def profiled(spec: Run, dump_c: str | None = None) -> Run:
    return replace(spec, grad_stats=True, dump_c=dump_c)


# Experiments ------------------------------------------------------------------------------------------


def smoke() -> list[Run]:
    return [replace(profiled(lionlike(1e-3)), epochs=1)]


def exp1() -> list[Run]:
    runs = []
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
        runs += [profiled(lionlike(lr)) if lr == 1e-3 else lionlike(lr), baseline("lion", lr, LION_WD)]
    return runs


def exp1b() -> list[Run]:
    runs = []
    for eps in (1e-12, 1e-20):
        spec = lionlike(3e-3)
        runs.append(replace(spec, name=f"{spec.name}_eps{eps:g}", config={**spec.config, "eps": eps}))
    for lr in (6e-3, 1e-2, 2e-2):
        runs += [lionlike(lr), baseline("lion", lr, LION_WD)]
    return runs


def lr_ladders(ladders: dict[float, tuple[float, ...]], profile_second: bool = False) -> list[Run]:
    return [
        profiled(lp(p, lr)) if profile_second and i == 1 else lp(p, lr)
        for p, lrs in ladders.items()
        for i, lr in enumerate(lrs)
    ]


def exp2() -> list[Run]:
    return lr_ladders(
        {3: (0.1, 0.2, 0.5, 1.0), 8: (5e-3, 1e-2, 2e-2, 4e-2), 32: (2e-3, 4e-3, 8e-3, 1.6e-2)}, profile_second=True
    )


def exp2b() -> list[Run]:
    return lr_ladders(
        {3: (0.14, 0.28), 8: (0.007, 0.014), 32: (0.003, 0.0057), 4: (0.03, 0.05, 0.08), 2: (1.0, 3.0, 10.0)}
    )


def exp2c() -> list[Run]:
    return lr_ladders({4: (0.12, 0.16), 6: (0.02, 0.03, 0.045), 2.5: (0.8, 1.5, 3.0)})


def exp2d() -> list[Run]:
    runs = [lp(6, 0.015), lp(6, 0.01), baseline("lion", 2e-3, LION_WD), baseline("lion", 4e-3, LION_WD)]
    for seed in (1, 2):
        runs += [baseline("lion", 3e-3, LION_WD, seed=seed), lp(6, 0.02, seed=seed), lp(4, 0.08, seed=seed)]
    return runs


def adamw_ladder() -> list[Run]:
    return [baseline("adamw", lr, 1e-2) for lr in (1e-3, 3e-3, 6e-3, 1e-2)]


def pcurve_seeds() -> list[Run]:
    return [lp(p, lr, seed=seed) for seed in (1, 2) for p, lr in ((3, 0.24), (8, 0.014), (32, 0.004), (INF, 3e-3))]


def extra_short() -> list[Run]:
    return [lp(3, 0.24), lp(4, 0.12, tau=tau_t(1), alpha=0.0, tag="_tauT1_ratio0")]


def exp3() -> list[Run]:
    return [
        lp(4, 0.08, tau=tau_t(k), alpha=ratio * 0.08, tag=f"_tauT{k:g}_ratio{ratio:g}")
        for k in (0.1, 1, 10)
        for ratio in (10, 100, 1000, 10000)
    ]


def exp3b() -> list[Run]:
    return [
        lp(4, 0.08, tau=tau_t(1), alpha=0.0, tag="_tauT1_ratio0"),
        lp(4, 0.08, tau=tau_t(1), alpha=0.08, tag="_tauT1_ratio1"),
        lp(4, 0.08, tau=tau_t(0.3), alpha=0.8, tag="_tauT0.3_ratio10"),
        lp(4, 0.08, tau=tau_t(3), alpha=0.8, tag="_tauT3_ratio10"),
        lp(4, 0.08, tau=tau_t(3), alpha=8, tag="_tauT3_ratio100"),
        lp(4, 0.08, tag="_wdeff3.8e-3", wd_per_step=tau_t(1)),  # decay towards 0 at tau's rate
        lp(4, 0.08, tag="_wdeff1e-3", wd_per_step=1e-3),
    ]


def exp3c() -> list[Run]:
    runs = []
    for seed in (1, 2):
        runs += [
            lp(4, 0.08, tau=tau_t(1), alpha=0.0, tag="_tauT1_ratio0", seed=seed),
            lp(4, 0.08, tau=tau_t(1), alpha=0.8, tag="_tauT1_ratio10", seed=seed),
        ]
    return runs + [
        lp(6, 0.02, tau=tau_t(1), alpha=0.0, tag="_tauT1_ratio0"),
        lp(6, 0.02, tau=tau_t(1), alpha=0.2, tag="_tauT1_ratio10"),
        lp(INF, 3e-3, tau=tau_t(1), alpha=0.0, tag="_tauT1_ratio0"),
        lp(INF, 3e-3, tau=tau_t(1), alpha=0.03, tag="_tauT1_ratio10"),
        lp(INF, 3e-3, tau=tau_t(1), alpha=3.0, tag="_tauT1_ratio1000"),
        lp(INF, 3e-3, tag="_plain"),
    ]


def noise() -> list[Run]:
    runs = []
    for seed in (1, 2):
        runs += [
            baseline("lion", 2e-3, LION_WD, seed=seed),
            baseline("adamw", 3e-3, 1e-2, seed=seed),
            lp(6, 0.02, tau=tau_t(1), alpha=0.2, tag="_tauT1_ratio10", seed=seed),
        ]
    return runs


def exp4() -> list[Run]:
    return [sgdlike(alpha) for alpha in (0.5, 1.0, 2.0, 4.0, 8.0)]


def exp4b() -> list[Run]:
    return [sgdlike(2.8), Run("sgd_lr0.2_wd0_s0", "sgd", {"lr": 0.2, "momentum": 0.9, "weight_decay": 0.0})]


def _best_tau(lr: float = 0.08, alpha: float = 0.8) -> Run:
    """p = 4 with tau = 1/T and alpha = 10 lr: the best of exp3 at the time."""
    return lp(4, lr, tau=tau_t(1), alpha=alpha, tag="_tauT1_ratio10")


def exp5() -> list[Run]:
    old = stacey("old_tuned", **OLD_TUNED)
    return [
        *(with_schedule(old, mode) for mode in ("const", "wc", "wc_tau")),
        *(with_schedule(_best_tau(), mode) for mode in ("wc", "wc_tau")),  # constant: exp3
        with_schedule(lp(INF, 3e-3), "wc"),
        with_schedule(lp(4, 0.08), "wc"),
    ]


def exp5b() -> list[Run]:
    old_doubled = stacey("old_tuned_x2", **{**OLD_TUNED, "lr": 0.94, "alpha": 5.06})
    return [
        *(with_schedule(lp(INF, lr), "wc") for lr in (6e-3, 1.2e-2)),
        *(with_schedule(lp(4, lr), "wc") for lr in (0.16, 0.24)),
        with_schedule(_best_tau(0.16, 1.6), "wc_tau"),
        with_schedule(old_doubled, "wc"),
        with_schedule(old_doubled, "wc_tau"),
    ]


def exp5c() -> list[Run]:
    # warmup_cosine over 265 steps sums its lr factors to about 133 steps: is a schedule a change of time?
    return [
        replace(lp(4, 0.08, tag="_133steps"), max_steps=133),
        replace(lp(4, 0.08, tau=tau_t(1), alpha=0.8, tag="_tauT1_ratio10_133steps"), max_steps=133),
    ]


def exp5d() -> list[Run]:
    old = stacey("old_tuned", **OLD_TUNED)
    return [
        scheduled(lp(INF, 3e-3), COSINE, "cos0"),
        scheduled(lp(INF, 3e-3), WARMUP_FLAT, "warmflat"),
        scheduled(lp(4, 0.08), COSINE, "cos0"),
        scheduled(lp(4, 0.08), WARMUP_FLAT, "warmflat"),
        scheduled(_best_tau(), COSINE, "cos0"),
        scheduled(_best_tau(), COSINE, "cos0_tau", tau_follows_lr=True),
        scheduled(old, COSINE, "cos0"),
        scheduled(old, COSINE, "cos0_tau", tau_follows_lr=True),
    ]


def dump_c() -> list[Run]:
    return [
        profiled(lp(p, lr, tag="_dumpc"), dump_c=f"/tmp/stacey-geometry/c_textlm_p{p:g}.pt")
        for p, lr in ((INF, 3e-3), (4, 0.08))
    ]


def exp6_digits() -> list[Run]:
    runs = [on_digits(lionlike(lr)) for lr in (3e-4, 1e-3, 3e-3)]
    runs[1] = profiled(runs[1], dump_c="/tmp/stacey-geometry/c_digits_pinf.pt")
    return runs + [on_digits(sgdlike(alpha)) for alpha in (0.3, 1.0, 3.0)]


def exp6_digits_transfer() -> list[Run]:
    runs = []
    for seed in (0, 1, 2):
        for p in (3, 4, 8):
            predicted = 1e-3 * C99_DIGITS ** (-1 / (p - 1))  # the coordinate-step rule from Lion's lr 1e-3
            runs += [
                on_digits(lp(p, round(predicted * factor, 6), seed=seed, tag=f"_pred{factor:.2g}"))
                for factor in (1 / 3, 1, 3)
            ]
        if seed:
            runs += [on_digits(lionlike(lr, seed=seed)) for lr in (3e-4, 1e-3, 3e-3)]
            runs += [on_digits(sgdlike(alpha, seed=seed)) for alpha in (0.3, 1.0)]
        runs.append(on_digits(sgdlike(0.1, seed=seed)))
    return runs


def exp6_long() -> list[Run]:
    tau = tau_t(1, T_LONG)
    return [
        long(spec)
        for spec in (
            baseline("lion", 2e-3, LION_WD),
            baseline("adamw", 3e-3, 1e-2),
            lp(4, 0.08, tau=tau, alpha=0.0, tag="_tauT1_ratio0"),
            lp(4, 0.08),
            baseline("lion", 1e-3, LION_WD),
            baseline("adamw", 1e-3, 1e-2),
            lp(4, 0.05, tau=tau, alpha=0.0, tag="_tauT1_ratio0"),
            lp(6, 0.02),
            baseline("lion", 3e-3, LION_WD),
            baseline("adamw", 1e-2, 1e-2),
            with_schedule(lp(4, 0.08, tau=tau, alpha=0.8, tag="_tauT1_ratio10"), "wc_tau"),
            with_schedule(lp(INF, 2e-3), "wc"),
        )
    ]


def exp6_long_b() -> list[Run]:
    return [
        long(spec)
        for spec in (
            baseline("lion", 5e-4, LION_WD),
            baseline("adamw", 2e-3, 1e-2),
            baseline("adamw", 5e-3, 1e-2),
            lp(4, 0.03, tau=tau_t(1, T_LONG), alpha=0.0, tag="_tauT1_ratio0"),
        )
    ]


def exp6_long_cos0() -> list[Run]:
    return [
        long(
            scheduled(
                lp(4, 0.08, tau=tau_t(1, T_LONG), alpha=0.8, tag="_tauT1_ratio10"),
                COSINE,
                "cos0_tau",
                tau_follows_lr=True,
            )
        ),
        long(scheduled(lp(INF, 2e-3), COSINE, "cos0")),
    ]


def exp6_long_seed1() -> list[Run]:
    return [
        long(spec)
        for spec in (
            lp(4, 0.05, tau=tau_t(1, T_LONG), alpha=0.0, tag="_tauT1_ratio0", seed=1),
            baseline("adamw", 3e-3, 1e-2, seed=1),
            baseline("lion", 1e-3, LION_WD, seed=1),
        )
    ]


def horizon() -> list[Run]:
    """The long textlm's data trained for 2 and 4 of its 8 epochs, at the lrs its full runs tried (exp6_long):
    does a short run's best lr hold for the full run? tau = 1/T of each run's own horizon (tau_horizon 1)."""
    runs = []
    for epochs in (2, 4):
        steps = T_LONG * epochs // 8
        tau = tau_t(1, steps)
        ladder = [lp(4, lr, tau=tau, alpha=0.0, tag=f"_tauT1_{epochs}ep") for lr in (0.03, 0.05, 0.08, 0.12)]
        ladder += [lionlike(lr) for lr in (5e-4, 1e-3, 2e-3, 3e-3)]
        runs += [replace(long(spec), epochs=epochs, name=f"long{epochs}ep_{spec.name}") for spec in ladder]
    return runs


# The registry -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    description: str  # what it asks, and where geometry.md answers
    runs: Callable[[], list[Run]]


EXPERIMENTS: dict[str, Experiment] = {
    "smoke": Experiment("one 1-epoch Lion-like run with gradient statistics: does the pipeline work", smoke),
    "exp1": Experiment("§0-1: Stacey at p = inf, tau = 0 against lion-pytorch, lr 1e-4 to 3e-3", exp1),
    "exp1b": Experiment("§1: the same above 3e-3, and eps 1e-12 / 1e-20 at 3e-3 (chaos at the edge)", exp1b),
    "exp2": Experiment("§2: lr ladders at tau = 0 for p = 3, 8, 32", exp2),
    "exp2b": Experiment("§2: finer ladders for p = 3, 8, 32, and p = 4 and 2", exp2b),
    "exp2c": Experiment("§2: ladders for p = 4 (above), 6 and 2.5", exp2c),
    "exp2d": Experiment("§2: p = 6's ladder, Lion's around 3e-3, seeds 1 and 2 of the best", exp2d),
    "adamw_ladder": Experiment("§2: AdamW's lr ladder (weight decay 0.01)", adamw_ladder),
    "pcurve_seeds": Experiment("§2: seeds 1 and 2 of the best lr at p = 3, 8, 32, inf", pcurve_seeds),
    "extra_short": Experiment("§2-3: p = 3 at 0.24, and tau = 1/T at p = 4, lr 0.12", extra_short),
    "exp3": Experiment("§3: tau = k/T (k 0.1, 1, 10) against alpha/lr (10 to 10000) at p = 4", exp3),
    "exp3b": Experiment("§3: tau = 1/T with alpha 0 and 0.08, k 0.3 and 3, decay towards 0 as controls", exp3b),
    "exp3c": Experiment("§3: seeds of tau = 1/T at p = 4; tau = 1/T at p = 6 and inf", exp3c),
    "noise": Experiment("§2-3: seeds 1 and 2 of Lion 2e-3, AdamW 3e-3 and p = 6 at tau = 1/T", noise),
    "exp4": Experiment("§4: the SGD-like regime (p 2, tau 1, equal betas) over alpha", exp4),
    "exp4b": Experiment("§4: alpha 2.8, and torch's SGD(lr 0.2, momentum 0.9) to compare", exp4b),
    "exp5": Experiment("§5: constant against warmup + cosine, tau constant or following lr", exp5),
    "exp5b": Experiment("§5: warmup + cosine at higher peak lr", exp5b),
    "exp5c": Experiment("§5: constant lr stopped at 133 steps (warmup + cosine's integrated time)", exp5c),
    "exp5d": Experiment("§5: cosine without warmup, and warmup then flat", exp5d),
    "dump_c": Experiment("§2: save c at step 260 (p = inf and 4) for lr_transfer", dump_c),
    "exp6_digits": Experiment("§6: digits, Lion-like and SGD-like anchors; saves c for lr_transfer", exp6_digits),
    "exp6_digits_transfer": Experiment(
        "§2, §6: digits at the predicted lr (x 1/3, 1, 3) for p = 3, 4, 8, 3 seeds", exp6_digits_transfer
    ),
    "exp6_long": Experiment("§6: the long textlm (8 epochs, 200000 characters): baselines and p = 4", exp6_long),
    "exp6_long_b": Experiment("§6: the long textlm, more lr rungs", exp6_long_b),
    "exp6_long_cos0": Experiment("§5-6: the long textlm with cosine, no warmup", exp6_long_cos0),
    "exp6_long_seed1": Experiment("§6: seed 1 of the long textlm's best three", exp6_long_seed1),
    "horizon": Experiment("§7: the long textlm's data at 2 and 4 of its 8 epochs: a short run's best lr", horizon),
}


# The command ------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.geometry.experiments",
        description="Run the geometry experiments (benchmarks/results/geometry.md), one CSV line per run.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list the experiments, with their number of runs")
    action.add_argument(
        "--run",
        action="append",
        metavar="NAME",
        choices=sorted(EXPERIMENTS),
        help="train this experiment's runs not yet in the CSV (repeat for several)",
    )
    parser.add_argument("--csv", type=Path, default=CSV, help=f"results file to append to (default {CSV})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1, as recorded)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    if arguments.list:
        for name, experiment in EXPERIMENTS.items():
            print(f"{name:22s} {len(experiment.runs()):3d} runs  {experiment.description}")
        return 0
    import torch

    from stacey_lightning.tuner.outputs import quiet_libraries

    from .runner import append_row, csv_row, finished, train

    torch.set_num_threads(arguments.threads)
    done = finished(arguments.csv)
    with quiet_libraries():  # one line per run, as a study prints one per trial
        for name in arguments.run:
            for spec in EXPERIMENTS[name].runs():
                if (name, spec.name) in done:
                    continue
                result = train(spec)
                append_row(arguments.csv, csv_row(name, spec, result))
                print(
                    f"{name:8s} {spec.name:45s} {result['metric']} {result['value']:.4f} steps {result['steps']} "
                    f"{result['seconds']}s",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
