"""How well "lr_p times the size of s_p(c) is constant" predicts the best lr per p, offline, on a stored
snapshot of c (``--run dump_c`` or ``--run exp6_digits`` of ``experiments`` writes one).

    python -m benchmarks.geometry.lr_transfer /tmp/stacey-geometry/c_textlm_pinf.pt [more snapshots]

For each p, the best lr measured on textlm (geometry.md §2, seed 0) times the mean, rms, 99th percentile
and maximum of |s_p(c)| = |c| ** (1/(p-1)) over the nonzero coordinates: the column that stays flat
across p is the one to transfer lr with (the 99th percentile: the coordinate step of docs/algorithm.md).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

__all__ = ["BEST_LR", "report", "main"]

BEST_LR = {2: 3.0, 2.5: 0.8, 3: 0.24, 4: 0.08, 6: 0.02, 8: 0.014, 32: 0.004, math.inf: 0.003}  # exp1, exp2*
_QUANTILE_LIMIT = 16_000_000  # torch.quantile's input size limit


def report(path: str) -> str:
    """The table for the snapshot of c at ``path`` ({parameter name: c}, as GradStats saves it)."""
    import torch

    c = torch.cat([t.reshape(-1) for t in torch.load(path).values()]).double()
    sizes = c[c != 0].abs()
    lines = [
        f"{path}: coords {c.numel()}, nonzero {sizes.numel()}; |c| median {sizes.median():.2e} mean "
        f"{sizes.mean():.2e} rms {sizes.pow(2).mean().sqrt():.2e} max {sizes.max():.2e}",
        "p     best_lr   mean|s|   rms|s|    p99|s|   max|s|    lr*mean   lr*rms    lr*p99   lr*max",
    ]
    for p, lr in BEST_LR.items():
        s = torch.ones_like(sizes) if p == math.inf else sizes.pow(1 / (p - 1))
        p99 = s.quantile(0.99).item() if s.numel() < _QUANTILE_LIMIT else math.nan
        stats = [s.mean().item(), s.pow(2).mean().sqrt().item(), p99, s.max().item()]
        lines.append(
            f"{p:<5g} {lr:<9.3g} "
            + " ".join(f"{v:<9.2e}" for v in stats)
            + " "
            + " ".join(f"{lr * v:<9.2e}" for v in stats)
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.geometry.lr_transfer", description=__doc__.splitlines()[0]
    )
    parser.add_argument("snapshots", nargs="+", help="files of c saved by GradStats(dump=...)")
    for path in parser.parse_args(argv).snapshots:
        print(report(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
