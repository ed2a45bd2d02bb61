"""Offline: the size of Stacey's l_p step s_p(c) on a stored momentum snapshot c, and how well
'lr_p * size(s_p(c)) = constant' predicts the best lr per p measured on textlm."""

import math
import sys

import torch

BEST = {2: 3.0, 2.5: 0.8, 3: 0.24, 4: 0.08, 6: 0.02, 8: 0.014, 32: 0.004, math.inf: 0.003}  # exp1/2 seed 0
for path in sys.argv[1:]:
    c = torch.cat([t.reshape(-1) for t in torch.load(path).values()]).double()
    nz = c[c != 0].abs()
    print(
        path,
        f"coords {c.numel()}, nonzero {nz.numel()}; |c| median {nz.median():.2e} mean {nz.mean():.2e} "
        f"rms {nz.pow(2).mean().sqrt():.2e} max {nz.max():.2e}",
    )
    print("p     best_lr   mean|s|   rms|s|    p99|s|   max|s|    lr*mean   lr*rms    lr*p99   lr*max")
    for p, lr in BEST.items():
        s = torch.ones_like(nz) if p == math.inf else nz.pow(1 / (p - 1))
        stats = [
            s.mean().item(),
            s.pow(2).mean().sqrt().item(),
            s.quantile(0.99).item() if s.numel() < 16e6 else float("nan"),
            s.max().item(),
        ]
        print(
            f"{p:<5g} {lr:<9.3g} "
            + " ".join(f"{v:<9.2e}" for v in stats)
            + " "
            + " ".join(f"{lr * v:<9.2e}" for v in stats)
        )
