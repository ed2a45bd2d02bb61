"""Associative recall, generated here from a fixed seed: ``PAIRS`` key-value pairs, then one of their keys
again; the answer is that key's value. A model must match the query against every key it has read and copy
the value that followed it: the in-context lookup that attention does in one step and a recurrent network
must hold in its state.

Tokens: keys are 0 .. ``KEYS`` - 1 (distinct within a sequence), values ``KEYS`` .. ``VOCABULARY`` - 1. A
sequence is ``k1 v1 k2 v2 ... kn vn q``, of length 2 ``PAIRS`` + 1; its target is the value's index in
[0, ``VALUES``). Chance accuracy is 1 / ``VALUES``.

Split: the first 80% of the samples train, the rest validate.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["recall", "KEYS", "VALUES", "VOCABULARY", "PAIRS", "LENGTH"]

KEYS = 16
VALUES = 16
VOCABULARY = KEYS + VALUES
PAIRS = 6
LENGTH = 2 * PAIRS + 1
_SEED = 3
_TRAIN_FRACTION = 0.8


def recall(samples: int = 6000) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Sequences int64 (n, ``LENGTH``), answers int64 (n,)."""
    if samples < 10:
        raise ValueError(f"Invalid samples: {samples} (need at least 10)")
    rng = np.random.default_rng(_SEED)
    keys = np.argsort(rng.random((samples, KEYS)), axis=1)[:, :PAIRS]  # a random choice without repeats
    values = rng.integers(0, VALUES, (samples, PAIRS))
    asked = rng.integers(0, PAIRS, samples)
    rows = np.arange(samples)
    sequences = np.empty((samples, LENGTH), dtype=np.int64)
    sequences[:, 0:-1:2] = keys
    sequences[:, 1:-1:2] = KEYS + values
    sequences[:, -1] = keys[rows, asked]
    sequences, answers = torch.as_tensor(sequences), torch.as_tensor(values[rows, asked], dtype=torch.int64)
    boundary = int(samples * _TRAIN_FRACTION)
    return (sequences[:boundary], answers[:boundary]), (sequences[boundary:], answers[boundary:])
