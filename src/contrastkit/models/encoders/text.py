"""A small text transformer over the built-in tokenizer's ids (the model owns tokenization)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import EncoderConfig
from contrastkit.models.encoders.base import ENCODERS, Transformer, make_encoder, masked_mean
from contrastkit.models.outputs import EncoderOutput


class TextTransformer(nn.Module):
    """Token + learned position embeddings, pre-LN transformer, masked-mean or CLS pooling.

    The BOS token the tokenizer puts first plays the role of BERT's [CLS] for `pool="cls"`.

    Args:
        tokenizer: turns `list[str]` into ids and a mask (see `models.tokenizer`).
        width, depth, heads, dropout: transformer size.
        max_length: longest sequence (BOS/EOS included); default: the tokenizer's.
        pool: "mean" (over real tokens) or "cls" (the BOS position).
    """

    def __init__(
        self,
        tokenizer: Any,
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        *,
        max_length: int | None = None,
        pool: str = "mean",
    ) -> None:
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        self.tokenizer = tokenizer
        default_length: int = getattr(tokenizer, "max_length", 64)
        self.max_length = int(max_length or default_length)
        self.pool = pool
        self.width = width
        self.token_embedding = nn.Embedding(tokenizer.vocab_size, width)
        self.position_embedding = nn.Parameter(torch.randn(1, self.max_length, width) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.transformer = Transformer(width, depth, heads, dropout)

    def forward(self, x: Sequence[str] | Tensor, mask: Tensor | None = None) -> EncoderOutput:
        """Encode raw texts, or already tokenized ids (B x L) with their mask."""
        device = self.token_embedding.weight.device
        if isinstance(x, Tensor):
            ids = x[:, : self.max_length]
            mask = None if mask is None else mask[:, : self.max_length]
        else:
            ids, mask = self.tokenizer.encode(list(x), self.max_length)
        ids = ids.to(device)
        mask = None if mask is None else mask.to(device)
        h = self.token_embedding(ids) + self.position_embedding[:, : ids.shape[1]]
        tokens = self.transformer(self.dropout(h), mask)
        pooled = tokens[:, 0] if self.pool == "cls" else masked_mean(tokens, mask)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=mask)


@ENCODERS.register("builtin_text")
def build_text_transformer(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `builtin_text` encoder over the run's tokenizer."""
    if tokenizer is None:
        raise ValueError(f"{where}: builtin_text needs a tokenizer")
    return make_encoder(
        TextTransformer,
        cfg.options,
        where,
        tokenizer=tokenizer,
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        dropout=cfg.dropout,
    )
