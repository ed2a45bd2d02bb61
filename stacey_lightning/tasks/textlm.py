"""Built-in task ``textlm``: a character-level causal transformer on the Python standard library's source.

The text ships with every Python installation, so the task needs no download and no network. The
corpus is the fixed list ``STDLIB_FILES`` (pure-Python modules present on CPython 3.10 to 3.13),
read from ``sysconfig.get_paths()["stdlib"]`` as raw bytes. The vocabulary is the 256 byte values,
which is the same on every machine. The files differ slightly between Python versions, so compare
numbers measured on the same Python version.

Split: the first 90% of the bytes of each file are training text, the last 10% validation text.
The split is deterministic and the two parts are disjoint, and every file contributes to both.

Metric: ``val_bpc``, validation cross-entropy in bits per character (= nats / ln 2; a character is one
byte, and these files are almost entirely ASCII). ``val_loss`` is the same quantity in nats.
"""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics import MeanMetric

from stacey_lightning.lightning.mixin import StaceyMixin
from stacey_lightning.tasks import build_seeded, named_options
from stacey_lightning.tasks.digits import EpochShuffle

__all__ = [
    "STDLIB_FILES",
    "SIZES",
    "VOCABULARY_SIZE",
    "VALIDATION_FRACTION",
    "load_stdlib_text",
    "split_text",
    "LR",
    "P",
    "TextLMModule",
    "TextLMDataModule",
    "make_textlm",
]

# Ten pure-Python modules of varied style (parsers, numerics, text, iteration helpers) that exist
# on CPython 3.10 to 3.13 and are not scheduled for removal. About 410 KB in total on 3.11.
STDLIB_FILES = (
    "argparse.py",
    "calendar.py",
    "csv.py",
    "difflib.py",
    "fractions.py",
    "functools.py",
    "heapq.py",
    "random.py",
    "statistics.py",
    "textwrap.py",
)

VOCABULARY_SIZE = 256
# Default Stacey step and geometry. The paper found p around 3 best for language models. At p = 3,
# 150 steps of the small model (constant lr, Python 3.11) reached bits per character 3.71 / 3.42 /
# 3.19 / 2.80 / 4.37 on the first 10 validation batches at lr 0.01 / 0.03 / 0.1 / 0.3 / 1.0. With
# gradients of order 1e-3 per coordinate, the step direction s(c) ~ sign(c) |c|^(1/2) is of order 0.03,
# far below Adam's order-1 normalised steps: hence an lr far above Adam's.
LR = 0.3
P = 3.0
VALIDATION_FRACTION = 0.1

# width = embedding size, depth = transformer blocks, heads = attention heads per block.
# "small" trains a few hundred steps on a laptop CPU in well under a minute (~0.47 M parameters);
# "large" (~10.9 M parameters) wants a GPU and a longer context (e.g. context=256).
SIZES = {
    "small": {"width": 128, "depth": 2, "heads": 4, "dropout": 0.0},
    "large": {"width": 384, "depth": 6, "heads": 6, "dropout": 0.1},
}


def split_text(text: bytes, validation_fraction: float = VALIDATION_FRACTION) -> tuple[bytes, bytes]:
    """Split one file's bytes into (training, validation): the head and the last ``validation_fraction``."""
    boundary = len(text) - int(len(text) * validation_fraction)
    return text[:boundary], text[boundary:]


def load_stdlib_text(max_chars: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (training, validation) byte streams of ``STDLIB_FILES`` as 1-D uint8 tensors.

    Each file is split with ``split_text`` and the parts are concatenated in ``STDLIB_FILES`` order.
    ``max_chars`` (bytes, default: all) keeps only the first ``max_chars // len(STDLIB_FILES)`` bytes of
    each file before splitting, so that small smoke runs still draw on every file.
    """
    if max_chars is not None and max_chars < len(STDLIB_FILES) * 20:
        raise ValueError(
            f"Invalid max_chars: {max_chars!r} (needs at least {len(STDLIB_FILES) * 20}, "
            f"20 bytes from each of the {len(STDLIB_FILES)} files)"
        )
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    training, validation = [], []
    for name in STDLIB_FILES:
        path = stdlib / name
        if not path.is_file():
            raise FileNotFoundError(
                f"textlm needs the standard library source file {path}, which this "
                "Python installation lacks (some minimal or embedded builds ship only "
                ".pyc files); use a full CPython installation"
            )
        text = path.read_bytes()
        if max_chars is not None:
            text = text[: max_chars // len(STDLIB_FILES)]
        head, tail = split_text(text)
        training.append(head)
        validation.append(tail)
    return tuple(torch.frombuffer(bytearray(b"".join(parts)), dtype=torch.uint8) for parts in (training, validation))


class _Windows(Dataset):
    """Non-overlapping windows of a byte stream: item i is (inputs, targets), each ``context`` bytes long
    as int64, targets shifted one byte ahead of inputs."""

    def __init__(self, stream: torch.Tensor, context: int):
        if len(stream) < context + 1:
            raise ValueError(
                f"Invalid context: {context} (the text has only {len(stream)} bytes; lower context or raise max_chars)"
            )
        self.stream = stream
        self.context = context

    def __len__(self) -> int:
        return (len(self.stream) - 1) // self.context

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = index * self.context
        window = self.stream[start : start + self.context + 1].long()
        return window[:-1], window[1:]


class TextLMDataModule(pl.LightningDataModule):
    """Windows of ``context`` bytes from ``load_stdlib_text``; training order shuffled with ``seed``.

    Batches: (inputs, targets), both int64 (batch, context), targets one byte ahead of inputs.
    """

    def __init__(self, context: int = 64, batch_size: int = 32, max_chars: int | None = None, seed: int = 0):
        super().__init__()
        self.context = context
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.seed = seed

    def setup(self, stage: str | None = None) -> None:
        training, validation = load_stdlib_text(self.max_chars)
        self.train_set = _Windows(training, self.context)
        self.val_set = _Windows(validation, self.context)

    def train_dataloader(self) -> DataLoader:
        # The order depends on (seed, epoch) only: trials with one seed see the same batches, and a
        # run resumed from a checkpoint sees the batches an uninterrupted run would.
        return DataLoader(
            self.train_set, batch_size=self.batch_size, sampler=EpochShuffle(len(self.train_set), self.seed)
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


class _Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a 4x-wide GELU MLP."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.attention_norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.projection = nn.Linear(width, width)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (
            self.qkv(self.attention_norm(x))
            .view(batch, length, 3, self.heads, width // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.mlp_norm(x))


class TextLMModule(StaceyMixin, pl.LightningModule):
    """Causal byte-level transformer trained with Stacey (configured through ``StaceyMixin``).

    Input: int64 byte tokens of shape (batch, length), length <= ``context``. Output: logits of shape
    (batch, length, 256). Logs ``train_loss`` (nats per character, every step), and per validation
    epoch ``val_loss`` (nats per character) and ``val_bpc`` (bits per character).

    Args:
        context: longest input, in characters (size of the learned position embedding). Default 64.
        width, depth, heads, dropout: embedding size, blocks, attention heads, dropout rate
            (defaults: the "small" size).
        lr: Stacey's primal step, saved as a hyperparameter (``set_stacey_config`` overrides it).
            Default ``LR``.
        p: Stacey's exponent, saved likewise. Default ``P``.
        foreach: passed to Stacey; True skips the compiled kernel (no compile time). Default None.
    """

    def __init__(
        self,
        context: int = 64,
        width: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        lr: float = LR,
        p: float = P,
        foreach: bool | None = None,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"Invalid heads: {heads} (must divide width={width})")
        self.save_hyperparameters()
        self.token_embedding = nn.Embedding(VOCABULARY_SIZE, width)
        self.position_embedding = nn.Embedding(context, width)
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(_Block(width, heads, dropout) for _ in range(depth)))
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, VOCABULARY_SIZE)
        # Mean over validation characters, weighted by how many each batch holds.
        self.val_nats = MeanMetric()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embedding_dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        return self.head(self.final_norm(self.blocks(x)))

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        return F.cross_entropy(self(inputs).flatten(0, 1), targets.flatten())

    def training_step(self, batch, batch_index: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_index: int) -> None:
        self.val_nats.update(self._loss(batch), weight=batch[1].numel())

    def on_validation_epoch_end(self) -> None:
        nats = self.val_nats.compute()
        self.val_nats.reset()
        self.log("val_loss", nats)
        self.log("val_bpc", nats / math.log(2))


@named_options("textlm")
def make_textlm(
    trial=None,
    size: str = "small",
    context: int = 64,
    batch_size: int = 32,
    max_chars: int | None = None,
    seed: int = 0,
    width: int | None = None,
    depth: int | None = None,
    heads: int | None = None,
    dropout: float | None = None,
    lr: float = LR,
    p: float = P,
    foreach: bool | None = None,
):
    """Build the ``textlm`` task: (TextLMModule, TextLMDataModule). Monitor "val_bpc", minimize.

    trial: accepted for the task contract; textlm suggests no hyperparameters of its own.
    size: "small" (default, CPU) or "large" (GPU), a preset from ``SIZES``, whose width, depth, heads
    and dropout the arguments of those names override; context: window length in characters
    (default 64); batch_size: windows per step (default 32); max_chars: bytes of text to use (default:
    all, about 410 KB); seed: weight initialisation and data order (default 0); lr, p, foreach:
    passed to TextLMModule.
    """
    if size not in SIZES:
        raise ValueError(f"Invalid size: {size!r} (choose one of {', '.join(SIZES)})")
    shape = {
        **SIZES[size],
        **{
            key: value
            for key, value in dict(width=width, depth=depth, heads=heads, dropout=dropout).items()
            if value is not None
        },
    }
    module = build_seeded(seed, lambda: TextLMModule(context=context, lr=lr, p=p, foreach=foreach, **shape))
    return module, TextLMDataModule(context=context, batch_size=batch_size, max_chars=max_chars, seed=seed)
