"""``digits-vit``: a small vision transformer on scikit-learn's 8x8 digits cut into 2x2 patches."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.suite.training import SuiteModule
from benchmarks.suite.workloads.transformer import encoder
from stacey_lightning.tasks import build_seeded, named_options
from stacey_lightning.tasks.digits import DigitsDataModule

__all__ = ["PatchViT", "make_digits_vit"]

_SIDE = 8  # pixels per side of a digit


class PatchViT(nn.Module):
    """(batch, 64) pixels as 8x8 images -> ``patch`` x ``patch`` patches, each a token of ``width`` -> a
    class token and learned positions -> ``depth`` pre-norm blocks (``transformer.encoder``) -> the class
    token's logits over 10 digits."""

    def __init__(self, width: int = 32, depth: int = 2, heads: int = 4, patch: int = 2) -> None:
        super().__init__()
        if _SIDE % patch:
            raise ValueError(f"Invalid patch: {patch} (must divide {_SIDE})")
        self.patch = patch
        self.patch_embedding = nn.Linear(patch * patch, width)
        # Embeddings (not bare parameters), so that the groups by kind treat them as a language model's.
        self.class_token = nn.Embedding(1, width)
        self.position_embedding = nn.Embedding((_SIDE // patch) ** 2 + 1, width)
        nn.init.zeros_(self.class_token.weight)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        self.blocks = encoder(width, depth, heads)
        self.final_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        p = self.patch
        patches = pixels.view(-1, _SIDE, _SIDE).unfold(1, p, p).unfold(2, p, p).reshape(len(pixels), -1, p * p)
        tokens = self.patch_embedding(patches)
        class_token = self.class_token.weight.expand(len(pixels), 1, -1)
        tokens = torch.cat([class_token, tokens], dim=1) + self.position_embedding.weight
        return self.head(self.final_norm(self.blocks(tokens))[:, 0])


@named_options("digits-vit")
def make_digits_vit(trial=None, seed: int = 0, width: int = 32, depth: int = 2, heads: int = 4, batch_size: int = 32):
    """Digits, ``PatchViT`` with 2x2 patches. Monitor val_acc, maximize."""
    module = build_seeded(seed, lambda: SuiteModule(PatchViT(width, depth, heads), "classification"))
    return module, DigitsDataModule(batch_size=batch_size, seed=seed)
