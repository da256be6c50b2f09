"""Encoders for precomputed features: an MLP for B x F vectors, a small transformer for
B x N x F token grids (e.g. chart cells or frozen-backbone patch features)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders.base import ENCODERS, Transformer, make_encoder, masked_mean
from contrastkit.models.outputs import EncoderOutput


class FeatureMLP(nn.Module):
    """`depth` hidden GELU layers then a linear map to `width`; one token (N = 1).

    Args:
        in_dim: F.
        width: output size D.
        depth: hidden layers (0 = a single linear map).
        dropout: dropout after each hidden layer.
        hidden: hidden size (default: width).
    """

    def __init__(
        self, in_dim: int, width: int, depth: int, dropout: float, *, hidden: int | None = None
    ) -> None:
        super().__init__()
        hidden = hidden or width
        layers: list[nn.Module] = [nn.LayerNorm(in_dim)]
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        layers.append(nn.Linear(d, width))
        self.mlp = nn.Sequential(*layers)
        self.width = width

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        pooled = self.mlp(x)
        return EncoderOutput(tokens=pooled.unsqueeze(1), pooled=pooled, mask=None)


class FeatureTransformer(nn.Module):
    """Linear token embedding, optional learned positions, transformer, masked mean.

    Args:
        grid_shape: (N, F) of one sample (N = most tokens).
        width, depth, heads, dropout: transformer size.
        positions: add learned position embeddings (off for unordered sets).
    """

    def __init__(
        self,
        grid_shape: tuple[int, ...],
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        *,
        positions: bool = True,
    ) -> None:
        super().__init__()
        n, f = grid_shape
        self.embed = nn.Sequential(nn.LayerNorm(f), nn.Linear(f, width))
        self.position = nn.Parameter(torch.randn(1, n, width) * 0.02) if positions else None
        self.dropout = nn.Dropout(dropout)
        self.transformer = Transformer(width, depth, heads, dropout)
        self.width = width

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        h = self.embed(x)
        if self.position is not None:
            if x.shape[1] > self.position.shape[1]:
                raise ValueError(
                    f"{x.shape[1]} tokens, the encoder was built for {self.position.shape[1]}"
                )
            h = h + self.position[:, : x.shape[1]]
        tokens = self.transformer(self.dropout(h), mask)
        return EncoderOutput(tokens=tokens, pooled=masked_mean(tokens, mask), mask=mask)


@ENCODERS.register("features")
def build_features(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `features` encoder: an MLP for a vector per row, a transformer for a grid (N x D)."""
    base = {"width": cfg.width, "depth": cfg.depth, "dropout": cfg.dropout}
    if len(input_spec) == 1:
        return make_encoder(FeatureMLP, cfg.options, where, in_dim=input_spec[0], **base)
    if len(input_spec) == 2:
        return make_encoder(
            FeatureTransformer,
            cfg.options,
            where,
            grid_shape=tuple(input_spec),
            heads=cfg.heads,
            **base,
        )
    raise ConfigError(f"{where}: features expects F or N x F per sample, got {input_spec}")
