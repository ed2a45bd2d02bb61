"""Recurrent networks over tokens: ``stdlib-gru``, a GRU byte-level language model on the standard library's
source (dev), and ``recall-lstm``, an LSTM on associative recall (validation)."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmarks.suite.datasets import recall, text
from benchmarks.suite.training import SuiteModule, TensorDataModule
from stacey_lightning.tasks import build_seeded, named_options

__all__ = ["SequenceRNN", "make_stdlib_gru", "make_recall_lstm"]

_CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


class SequenceRNN(nn.Module):
    """Tokens int64 (batch, length) -> an embedding of ``width`` -> one ``cell`` ("gru" or "lstm") layer of
    ``hidden`` units -> logits (batch, length, outputs); with ``last_only``, the last step's (batch, outputs)."""

    def __init__(
        self, cell: str, vocabulary: int, outputs: int, width: int, hidden: int, last_only: bool = False
    ) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"Invalid cell: {cell!r} (choose one of {', '.join(_CELLS)})")
        self.embedding = nn.Embedding(vocabulary, width)
        self.recurrent = _CELLS[cell](width, hidden, batch_first=True)
        self.head = nn.Linear(hidden, outputs)
        self.last_only = last_only

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        states, _ = self.recurrent(self.embedding(tokens))
        return self.head(states[:, -1] if self.last_only else states)


@named_options("stdlib-gru")
def make_stdlib_gru(
    trial=None,
    seed: int = 0,
    width: int = 64,
    hidden: int = 128,
    context: int = 64,
    max_bytes: int | None = 40_000,
    batch_size: int = 16,
):
    """GRU byte-level LM on ``max_bytes`` of the dev corpus, windows of ``context`` bytes. Monitor val_bpc,
    minimize."""
    network = lambda: SequenceRNN("gru", text.VOCABULARY, text.VOCABULARY, width, hidden)
    module = build_seeded(seed, lambda: SuiteModule(network(), "language"))
    return module, TensorDataModule(partial(text.byte_windows, "dev", context, max_bytes), batch_size, seed)


@named_options("recall-lstm")
def make_recall_lstm(
    trial=None, seed: int = 0, width: int = 32, hidden: int = 128, samples: int = 3000, batch_size: int = 32
):
    """Associative recall (``samples`` sequences, 80% to train), read from the last step. Monitor val_acc,
    maximize."""
    network = lambda: SequenceRNN("lstm", recall.VOCABULARY, recall.VALUES, width, hidden, last_only=True)
    module = build_seeded(seed, lambda: SuiteModule(network(), "classification"))
    return module, TensorDataModule(partial(recall.recall, samples), batch_size, seed)
