"""Experiment lists: each entry of EXPERIMENTS is a function returning run specs (see runner.py)."""

import math

INF = math.inf
LION_WD = 0.01


def stacey(name, seed=0, wd=0.0, wd_vectors=None, **cfg):
    config = {"betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": wd, **cfg}
    if wd_vectors is not None:
        config.setdefault("kinds", {})["vector"] = {"weight_decay": wd_vectors}
    return {"name": name, "task": "textlm", "optimizer": "stacey", "seed": seed, "config": config}


def lionlike(lr, seed=0, **extra):
    # Stacey at p = inf, tau = 0: Lion. Weight decay on every parameter, as lion-pytorch does.
    return stacey(
        f"stacey_inf_tau0_lr{lr:g}_s{seed}",
        seed=seed,
        p=INF,
        tau=0.0,
        alpha=0.0,
        lr=lr,
        wd=LION_WD,
        wd_vectors=LION_WD,
        **extra,
    )


def baseline(opt, lr, wd, seed=0, task="textlm", **kw):
    return {
        "name": f"{opt}_lr{lr:g}_wd{wd:g}_s{seed}",
        "task": task,
        "optimizer": opt,
        "seed": seed,
        "config": {"lr": lr, "weight_decay": wd},
        **kw,
    }


def smoke():
    s = lionlike(1e-3)
    s["epochs"] = 1
    s["grad_stats"] = True
    return [s]


def exp1():
    runs = []
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
        s = lionlike(lr)
        if lr == 1e-3:
            s["grad_stats"] = True
        runs += [s, baseline("lion", lr, LION_WD)]
    return runs


def exp1b():
    runs = []
    for eps in (1e-12, 1e-20):
        s = lionlike(3e-3)
        s["config"]["eps"] = eps
        s["name"] += f"_eps{eps:g}"
        runs.append(s)
    for lr in (6e-3, 1e-2, 2e-2):
        runs += [lionlike(lr), baseline("lion", lr, LION_WD)]
    return runs


WD_EFF = 3e-5  # lr * weight_decay per step, as Lion's 3e-3 * 0.01


def lp(p, lr, tau=0.0, alpha=0.0, seed=0, tag="", wd_eff=WD_EFF, **extra):
    name = f"stacey_p{p:g}_tau{tau:g}_alpha{alpha:g}_lr{lr:g}{tag}_s{seed}"
    return stacey(name, seed=seed, p=p, lr=lr, tau=tau, alpha=alpha, wd=wd_eff / lr, wd_vectors=wd_eff / lr, **extra)


LADDERS2 = {3: (0.1, 0.2, 0.5, 1.0), 8: (5e-3, 1e-2, 2e-2, 4e-2), 32: (2e-3, 4e-3, 8e-3, 1.6e-2)}


def exp2():
    runs = []
    for p, lrs in LADDERS2.items():
        for i, lr in enumerate(lrs):
            s = lp(p, lr)
            s["grad_stats"] = i == 1
            runs.append(s)
    return runs


LADDERS2B = {3: (0.14, 0.28), 8: (0.007, 0.014), 32: (0.003, 0.0057), 4: (0.03, 0.05, 0.08), 2: (1.0, 3.0, 10.0)}


def exp2b():
    return [lp(p, lr) for p, lrs in LADDERS2B.items() for lr in lrs]


LADDERS2C = {4: (0.12, 0.16), 6: (0.02, 0.03, 0.045), 2.5: (0.8, 1.5, 3.0)}


def exp2c():
    return [lp(p, lr) for p, lrs in LADDERS2C.items() for lr in lrs]


def exp2d():
    runs = [lp(6, 0.015), lp(6, 0.01), baseline("lion", 2e-3, LION_WD), baseline("lion", 4e-3, LION_WD)]
    for seed in (1, 2):
        runs += [baseline("lion", 3e-3, LION_WD, seed=seed), lp(6, 0.02, seed=seed), lp(4, 0.08, seed=seed)]
    return runs


T = 265  # optimizer steps in a 5-epoch textlm run (measured)


def exp3():
    runs = []
    for k in (0.1, 1, 10):
        for ratio in (10, 100, 1000, 10000):
            runs.append(lp(4, 0.08, tau=round(k / T, 6), alpha=ratio * 0.08, tag=f"_tauT{k:g}_ratio{ratio:g}"))
    return runs


def adamw_ladder():
    return [baseline("adamw", lr, 1e-2) for lr in (1e-3, 3e-3, 6e-3, 1e-2)]


def exp3b():
    tau1 = round(1 / T, 6)
    return [
        lp(4, 0.08, tau=tau1, alpha=0.0, tag="_tauT1_ratio0"),
        lp(4, 0.08, tau=tau1, alpha=0.08, tag="_tauT1_ratio1"),
        lp(4, 0.08, tau=round(0.3 / T, 6), alpha=0.8, tag="_tauT0.3_ratio10"),
        lp(4, 0.08, tau=round(3 / T, 6), alpha=0.8, tag="_tauT3_ratio10"),
        lp(4, 0.08, tau=round(3 / T, 6), alpha=8, tag="_tauT3_ratio100"),
        lp(4, 0.08, tag="_wdeff3.8e-3", wd_eff=tau1),
        lp(4, 0.08, tag="_wdeff1e-3", wd_eff=1e-3),
    ]


def exp3c():
    tau1 = round(1 / T, 6)
    runs = []
    for seed in (1, 2):
        runs += [
            lp(4, 0.08, tau=tau1, alpha=0.0, tag="_tauT1_ratio0", seed=seed),
            lp(4, 0.08, tau=tau1, alpha=0.8, tag="_tauT1_ratio10", seed=seed),
        ]
    runs += [
        lp(6, 0.02, tau=tau1, alpha=0.0, tag="_tauT1_ratio0"),
        lp(6, 0.02, tau=tau1, alpha=0.2, tag="_tauT1_ratio10"),
        lp(INF, 3e-3, tau=tau1, alpha=0.0, tag="_tauT1_ratio0"),
        lp(INF, 3e-3, tau=tau1, alpha=0.03, tag="_tauT1_ratio10"),
        lp(INF, 3e-3, tau=tau1, alpha=3.0, tag="_tauT1_ratio1000"),
        lp(INF, 3e-3, tag="_plain"),
    ]
    return runs


def sgdlike(alpha, seed=0, task="textlm", lr=None):
    # p = 2, tau = 1, beta1 = beta2: x = z, SGD on an EMA momentum with step alpha. lr only scales the
    # (ineffective at tau = 1) weight decay: weight decay 0.
    s = stacey(
        f"stacey_sgdlike_alpha{alpha:g}_s{seed}",
        seed=seed,
        p=2.0,
        tau=1.0,
        alpha=alpha,
        lr=alpha if lr is None else lr,
        betas=[0.9, 0.9],
        wd=0.0,
    )
    s["task"] = task
    return s


def exp4():
    return [sgdlike(a) for a in (0.5, 1.0, 2.0, 4.0, 8.0)]


def exp4b():
    return [sgdlike(2.8), {**baseline("sgd", 0.2, 0.0), "config": {"lr": 0.2, "momentum": 0.9, "weight_decay": 0.0}}]


WC = {"name": "warmup_cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.0}
OLD_TUNED = dict(
    p=2.23, lr=0.47, alpha=2.53, tau=0.0954, weight_decay=0.00831, kinds={"embedding": {"p": 7.98, "weight_decay": 0.0}}
)


def with_schedule(spec, mode):
    """mode: const | wc (tau constant, current behaviour) | wc_tau (tau follows lr)."""
    spec = {**spec, "config": dict(spec["config"]), "name": spec["name"] + "_" + mode}
    if mode != "const":
        spec["config"]["schedule"] = dict(WC)
    if mode == "wc_tau":
        spec["config"]["tau_follows_lr"] = True
    return spec


def exp5():
    old = stacey("old_tuned", **OLD_TUNED)
    best_tau = lp(4, 0.08, tau=round(1 / T, 6), alpha=0.8, tag="_tauT1_ratio10")
    runs = [with_schedule(old, m) for m in ("const", "wc", "wc_tau")]
    runs += [with_schedule(best_tau, m) for m in ("wc", "wc_tau")]  # const: exp3 (2.6846)
    runs += [with_schedule(lp(INF, 3e-3), "wc"), with_schedule(lp(4, 0.08), "wc")]
    return runs


def exp5b():
    old2 = stacey("old_tuned_x2", **{**OLD_TUNED, "lr": 0.94, "alpha": 5.06})
    runs = [with_schedule(lp(INF, lr), "wc") for lr in (6e-3, 1.2e-2)]
    runs += [with_schedule(lp(4, lr), "wc") for lr in (0.16, 0.24)]
    runs += [with_schedule(lp(4, 0.16, tau=round(1 / T, 6), alpha=1.6, tag="_tauT1_ratio10"), "wc_tau")]
    runs += [with_schedule(old2, "wc"), with_schedule(old2, "wc_tau")]
    return runs


def exp5c():
    # Time re-parametrisation check: warmup_cosine over 265 steps has sum of lr factors ~ 133 steps.
    runs = []
    for spec in (
        lp(4, 0.08, tag="_133steps"),
        lp(4, 0.08, tau=round(1 / T, 6), alpha=0.8, tag="_tauT1_ratio10_133steps"),
    ):
        spec["max_steps"] = 133
        runs.append(spec)
    return runs


def noise():
    runs = []
    for seed in (1, 2):
        runs += [
            baseline("lion", 2e-3, LION_WD, seed=seed),
            baseline("adamw", 3e-3, 1e-2, seed=seed),
            lp(6, 0.02, tau=round(1 / T, 6), alpha=0.2, tag="_tauT1_ratio10", seed=seed),
        ]
    return runs


def dump_c():
    out = []
    for p, lr in ((INF, 3e-3), (4, 0.08)):
        s = lp(p, lr, tag="_dumpc")
        s.update(grad_stats=True, dump_c=f"/tmp/stacey-geometry/c_textlm_p{p:g}.pt")
        out.append(s)
    return out


def digits(spec, epochs=10):
    return {**spec, "task": "digits", "epochs": epochs, "name": "digits_" + spec["name"]}


def exp6_digits():
    runs = []
    for lr in (3e-4, 1e-3, 3e-3):
        s = digits(lionlike(lr))
        if lr == 1e-3:
            s.update(grad_stats=True, dump_c="/tmp/stacey-geometry/c_digits_pinf.pt")
        runs.append(s)
    runs += [digits(sgdlike(a)) for a in (0.3, 1.0, 3.0)]
    return runs


C99_DIGITS = 1.88e-3  # 99th percentile of |c| on digits (Lion-like run, step 260)


def exp6_digits_transfer():
    runs = []
    for seed in (0, 1, 2):
        for p in (3, 4, 8):
            pred = 1e-3 * C99_DIGITS ** (-1 / (p - 1))
            for f in (1 / 3, 1, 3):
                runs.append(digits(lp(p, round(pred * f, 6), seed=seed, tag=f"_pred{f:.2g}")))
        if seed:
            runs += [digits(lionlike(lr, seed=seed)) for lr in (3e-4, 1e-3, 3e-3)]
            runs += [digits(sgdlike(a, seed=seed)) for a in (0.3, 1.0)]
        runs += [digits(sgdlike(0.1, seed=seed))]
    return runs


T_LONG = 1408  # 8 epochs x 176 steps at max_chars 200000


def long(spec):
    return {**spec, "epochs": 8, "max_chars": 200_000, "name": "long_" + spec["name"]}


def exp6_long():
    tau = round(1 / T_LONG, 7)
    return [
        long(baseline("lion", 2e-3, LION_WD)),
        long(baseline("adamw", 3e-3, 1e-2)),
        long(lp(4, 0.08, tau=tau, alpha=0.0, tag="_tauT1_ratio0")),
        long(lp(4, 0.08)),
        long(baseline("lion", 1e-3, LION_WD)),
        long(baseline("adamw", 1e-3, 1e-2)),
        long(lp(4, 0.05, tau=tau, alpha=0.0, tag="_tauT1_ratio0")),
        long(lp(6, 0.02)),
        long(baseline("lion", 3e-3, LION_WD)),
        long(baseline("adamw", 1e-2, 1e-2)),
        long(with_schedule(lp(4, 0.08, tau=tau, alpha=0.8, tag="_tauT1_ratio10"), "wc_tau")),
        long(with_schedule(lp(INF, 2e-3), "wc")),
    ]


C0 = {"name": "warmup_cosine", "warmup_fraction": 0.0, "min_lr_ratio": 0.0}  # cosine, no warmup
WF = {"name": "warmup_cosine", "warmup_fraction": 0.05, "min_lr_ratio": 1.0}  # warmup, then flat


def sched(spec, schedule, label, tau_follows=False):
    spec = {**spec, "config": {**spec["config"], "schedule": dict(schedule)}, "name": spec["name"] + "_" + label}
    if tau_follows:
        spec["config"]["tau_follows_lr"] = True
    return spec


def exp5d():
    old = stacey("old_tuned", **OLD_TUNED)
    best_tau = lp(4, 0.08, tau=round(1 / T, 6), alpha=0.8, tag="_tauT1_ratio10")
    return [
        sched(lp(INF, 3e-3), C0, "cos0"),
        sched(lp(INF, 3e-3), WF, "warmflat"),
        sched(lp(4, 0.08), C0, "cos0"),
        sched(lp(4, 0.08), WF, "warmflat"),
        sched(best_tau, C0, "cos0"),
        sched(best_tau, C0, "cos0_tau", True),
        sched(old, C0, "cos0"),
        sched(old, C0, "cos0_tau", True),
    ]


def exp6_long_cos0():
    tau = round(1 / T_LONG, 7)
    return [
        long(sched(lp(4, 0.08, tau=tau, alpha=0.8, tag="_tauT1_ratio10"), C0, "cos0_tau", True)),
        long(sched(lp(INF, 2e-3), C0, "cos0")),
    ]


def pcurve_seeds():
    return [lp(p, lr, seed=seed) for seed in (1, 2) for p, lr in ((3, 0.24), (8, 0.014), (32, 0.004), (INF, 3e-3))]


def extra_short():
    return [lp(3, 0.24), lp(4, 0.12, tau=round(1 / T, 6), alpha=0.0, tag="_tauT1_ratio0")]


def exp6_long_b():
    tau = round(1 / T_LONG, 7)
    return [
        long(baseline("lion", 5e-4, LION_WD)),
        long(baseline("adamw", 2e-3, 1e-2)),
        long(baseline("adamw", 5e-3, 1e-2)),
        long(lp(4, 0.03, tau=tau, alpha=0.0, tag="_tauT1_ratio0")),
    ]


def exp6_long_seed1():
    tau = round(1 / T_LONG, 7)
    return [
        long(lp(4, 0.05, tau=tau, alpha=0.0, tag="_tauT1_ratio0", seed=1)),
        long(baseline("adamw", 3e-3, 1e-2, seed=1)),
        long(baseline("lion", 1e-3, LION_WD, seed=1)),
    ]


EXPERIMENTS = {
    name: fn
    for name, fn in globals().items()
    if name.startswith(("exp", "smoke", "adamw_", "noise", "dump_", "pcurve", "extra_"))
}
