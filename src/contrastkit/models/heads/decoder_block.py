"""Decoder block of the captioning decoder: causal self-attention, cross-attention, MLP.

Attention computes keys / values apart from the queries so that decoding can cache them
(`kv_cache.LayerCache`): the prefix's self-attention keys / values and the memory's
cross-attention keys / values are then computed once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.models.heads.kv_cache import LayerCache


class Attention(nn.Module):
    """Multi-head attention; keys / values are computed apart so that they can be cached."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads != 0:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``context`` (B x N x W), each B x heads x N x W/heads."""
        batch, length, _ = context.shape
        k, v = self.key_value(context).view(batch, length, 2, self.heads, -1).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(
        self, x: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, causal: bool = False
    ) -> Tensor:
        """Attend from ``x`` (B x L x W) to keys / values from ``keys_values``.

        Args:
            mask: B x N bool, True where a context token may be attended to.
            causal: position i attends only to key positions <= i (needs L == N).
        """
        batch, length, width = x.shape
        q = self.query(x).view(batch, length, self.heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None else mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class DecoderBlock(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the memory, MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attention = Attention(width, heads, dropout)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attention = Attention(width, heads, dropout)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """Run the block on ``x``; with a non-empty ``cache``, ``x`` is the one next position."""
        h = self.norm_self(x)
        k, v = self.self_attention.keys_values(h)
        causal = True
        if cache is not None and cache.self_k is not None and cache.self_v is not None:
            if x.shape[1] != 1:
                raise ValueError("a cached decoder step takes exactly one new position")
            k, v = torch.cat([cache.self_k, k], dim=2), torch.cat([cache.self_v, v], dim=2)
            causal = False  # the single new query may see every cached position
        if cache is not None:
            cache.self_k, cache.self_v = k, v
        x = x + self.drop(self.self_attention(h, k, v, causal=causal))
        if cache is not None and cache.cross_k is not None:
            cross_k, cross_v = cache.cross_k, cache.cross_v
        else:
            cross_k, cross_v = self.cross_attention.keys_values(memory)
            if cache is not None:
                cache.cross_k, cache.cross_v = cross_k, cross_v
        x = x + self.drop(
            self.cross_attention(self.norm_cross(x), cross_k, cross_v, mask=memory_mask)
        )
        return x + self.drop(self.mlp(self.norm_mlp(x)))
