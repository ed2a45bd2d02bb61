"""Markdown tables of every run in results/geometry.csv, grouped by experiment (pasted into results/geometry.md)."""

import csv
import json
from pathlib import Path

rows = list(csv.DictReader((Path(__file__).parents[1] / "results" / "geometry.csv").open()))
by = {}
for r in rows:
    by.setdefault(r["exp"], []).append(r)


def short(cfg, opt):
    c = json.loads(cfg)
    if opt != "stacey":
        return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in c.items())
    keys = ["p", "lr", "alpha", "tau", "weight_decay", "betas"] + (["eps"] if c.get("eps", 1e-8) != 1e-8 else [])
    out = []
    for k in keys:
        if k in c:
            v = c[k]
            out.append(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}")
    if "kinds" in c and c["kinds"]:
        out.append("kinds " + json.dumps(c["kinds"]).replace('"', ""))
    if "schedule" in c:
        out.append("schedule " + c["schedule"]["name"])
    if c.get("tau_follows_lr"):
        out.append("tau_follows_lr")
    return ", ".join(out)


for exp, rs in by.items():
    print(f"\n### {exp}\n")
    print("| run | optimizer | seed | config | metric | value | steps | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rs:
        print(
            f"| {r['name']} | {r['optimizer']} | {r['seed']} | {short(r['config'], r['optimizer'])} | {r['metric']} | "
            f"{float(r['value']):.4f} | {r['steps']} | {r['seconds']} |"
        )
