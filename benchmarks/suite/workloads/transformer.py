"""Causal transformers over tokens: byte-level language models on the standard library's source at two
widths and two run lengths (``stdlib-transformer-narrow``, dev; ``stdlib-transformer-wide``, validation, on
the other corpus), and ``recall-transformer`` on associative recall. Pre-norm blocks from torch's own
``nn.TransformerEncoderLayer`` (GELU, a 4x-wide MLP, no dropout) under a causal mask."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmarks.suite.datasets import recall, text
from benchmarks.suite.training import SuiteModule, TensorDataModule
from stacey_lightning.tasks import build_seeded, named_options

__all__ = [
    "encoder", "SequenceTransformer", "make_stdlib_transformer_narrow", "make_stdlib_transformer_wide",
    "make_recall_transformer",
]  # fmt: skip


def encoder(width: int, depth: int, heads: int) -> nn.TransformerEncoder:
    """``depth`` pre-norm blocks of ``heads``-head self-attention and a 4x-wide GELU MLP, no dropout."""
    if width % heads:
        raise ValueError(f"Invalid heads: {heads} (must divide width={width})")
    block = nn.TransformerEncoderLayer(
        width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(block, depth, enable_nested_tensor=False)


class SequenceTransformer(nn.Module):
    """Tokens int64 (batch, length <= context) -> logits (batch, length, outputs), every position seeing only
    itself and earlier ones; with ``last_only``, the last position's logits (batch, outputs)."""

    def __init__(
        self, vocabulary: int, context: int, outputs: int, width: int, depth: int, heads: int, last_only: bool = False
    ) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary, width)
        self.position_embedding = nn.Embedding(context, width)
        self.blocks = encoder(width, depth, heads)
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, outputs)
        self.last_only = last_only

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.position_embedding(torch.arange(length, device=tokens.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        x = self.final_norm(self.blocks(x, mask=mask, is_causal=True))
        return self.head(x[:, -1] if self.last_only else x)


def _stdlib_language_model(
    corpus: str, seed: int, width: int, depth: int, heads: int, context: int, max_bytes: int | None, batch_size: int
):
    network = lambda: SequenceTransformer(text.VOCABULARY, context, text.VOCABULARY, width, depth, heads)
    module = build_seeded(seed, lambda: SuiteModule(network(), "language"))
    return module, TensorDataModule(partial(text.byte_windows, corpus, context, max_bytes), batch_size, seed)


@named_options("stdlib-transformer-narrow")
def make_stdlib_transformer_narrow(
    trial=None,
    seed: int = 0,
    width: int = 64,
    depth: int = 2,
    heads: int = 4,
    context: int = 64,
    max_bytes: int | None = 40_000,
    batch_size: int = 16,
):
    """Byte-level causal LM on ``max_bytes`` of the dev corpus, windows of ``context`` bytes. Monitor val_bpc,
    minimize."""
    return _stdlib_language_model("dev", seed, width, depth, heads, context, max_bytes, batch_size)


@named_options("stdlib-transformer-wide")
def make_stdlib_transformer_wide(
    trial=None,
    seed: int = 0,
    width: int = 96,
    depth: int = 2,
    heads: int = 4,
    context: int = 64,
    max_bytes: int | None = 40_000,
    batch_size: int = 16,
):
    """As the narrow one, 1.5 times as wide, on the validation corpus. Monitor val_bpc, minimize."""
    return _stdlib_language_model("validation", seed, width, depth, heads, context, max_bytes, batch_size)


@named_options("recall-transformer")
def make_recall_transformer(
    trial=None,
    seed: int = 0,
    width: int = 32,
    depth: int = 2,
    heads: int = 4,
    samples: int = 3000,
    batch_size: int = 32,
):
    """Associative recall (``samples`` sequences, 80% to train), read from the query's position. Monitor
    val_acc, maximize."""
    network = lambda: SequenceTransformer(
        recall.VOCABULARY, recall.LENGTH, recall.VALUES, width, depth, heads, last_only=True
    )
    module = build_seeded(seed, lambda: SuiteModule(network(), "classification"))
    return module, TensorDataModule(partial(recall.recall, samples), batch_size, seed)
