"""Projection head: pooled tower features -> L2-normalised embedding (CLIP, Radford et al.
2021, uses a linear map; SimCLR, Chen et al. 2020, showed an MLP head can help)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.config import ProjectionConfig


class Projection(nn.Module):
    """Linear or two-layer MLP map to `embed_dim`, then `F.normalize`.

    Args:
        in_dim: pooled feature size.
        embed_dim: embedding size E.
        kind: "linear" or "mlp".
        hidden: MLP hidden size (default: in_dim).
        dropout: dropout inside the MLP.

    Shape:
        B x in_dim -> B x E, every row of unit L2 norm.
    """

    def __init__(
        self,
        in_dim: int,
        embed_dim: int,
        kind: str = "linear",
        hidden: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, embed_dim)
        elif kind == "mlp":
            hidden = hidden or in_dim
            self.net = nn.Sequential(
                nn.Linear(in_dim, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, embed_dim),
            )
        else:
            raise ValueError(f"projection kind must be 'linear' or 'mlp', got {kind!r}")
        self.embed_dim = embed_dim

    def forward(self, pooled: Tensor) -> Tensor:
        return F.normalize(self.net(pooled), dim=-1)


def build_projection(cfg: ProjectionConfig, in_dim: int, embed_dim: int) -> Projection:
    return Projection(in_dim, embed_dim, kind=cfg.type, hidden=cfg.hidden, dropout=cfg.dropout)
