"""Fusion of several input streams of one tower into one set of tokens and one pooled vector.

Every fusion maps stream widths to a common `width` first, then:
- `concat`: tokens concatenated along N, each tagged with a learned stream-type embedding
  (as segment embeddings in BERT); pooled = linear map of the concatenated pooled vectors.
- `gated`: per-stream linear map, a learned sigmoid gate per stream and channel, gated sum
  of pooled vectors (gated multimodal units, Arevalo et al. 2017); tokens concatenated.
- `cross_attention`: the first stream's tokens attend to all other streams' tokens
  (pre-LN residual block, as in Flamingo-style cross-attention); pooled = masked mean.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import FusionConfig
from contrastkit.models.encoders import check_heads, masked_mean
from contrastkit.models.outputs import EncoderOutput


def _token_mask(out: EncoderOutput) -> Tensor:
    tokens = out.tokens
    if out.mask is not None:
        return out.mask
    return torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


def _to_width(dim: int, width: int) -> nn.Module:
    return nn.Identity() if dim == width else nn.Linear(dim, width)


class Fusion(nn.Module):
    """Base: holds the stream names (in order) and the fused width."""

    def __init__(self, stream_widths: dict[str, int], width: int) -> None:
        super().__init__()
        if len(stream_widths) < 1:
            raise ValueError("fusion needs at least one stream")
        self.streams = list(stream_widths)
        self.width = width

    def _check(self, outputs: dict[str, EncoderOutput]) -> list[EncoderOutput]:
        missing = [s for s in self.streams if s not in outputs]
        if missing:
            raise KeyError(f"fusion is missing streams {missing}")
        return [outputs[s] for s in self.streams]


class ConcatFusion(Fusion):
    """Concatenated tokens tagged by stream; pooled = linear map of concatenated pooled."""

    def __init__(self, stream_widths: dict[str, int], width: int) -> None:
        super().__init__(stream_widths, width)
        self.token_maps = nn.ModuleDict({s: _to_width(d, width) for s, d in stream_widths.items()})
        self.stream_type = nn.Parameter(torch.randn(len(stream_widths), width) * 0.02)
        self.pooled_map = nn.Linear(sum(stream_widths.values()), width)

    @override
    def forward(self, outputs: dict[str, EncoderOutput]) -> EncoderOutput:
        outs = self._check(outputs)
        tokens = [
            self.token_maps[s](o.tokens) + self.stream_type[i]
            for i, (s, o) in enumerate(zip(self.streams, outs, strict=True))
        ]
        pooled = self.pooled_map(torch.cat([o.pooled for o in outs], dim=-1))
        mask = torch.cat([_token_mask(o) for o in outs], dim=1)
        return EncoderOutput(tokens=torch.cat(tokens, dim=1), pooled=pooled, mask=mask)


class GatedFusion(Fusion):
    """Sum of per-stream pooled vectors, each scaled by its own learned sigmoid gate."""

    def __init__(self, stream_widths: dict[str, int], width: int) -> None:
        super().__init__(stream_widths, width)
        self.maps = nn.ModuleDict({s: nn.Linear(d, width) for s, d in stream_widths.items()})
        self.gates = nn.ModuleDict({s: nn.Linear(width, width) for s in stream_widths})

    @override
    def forward(self, outputs: dict[str, EncoderOutput]) -> EncoderOutput:
        outs = self._check(outputs)
        gated, tokens = [], []
        for s, o in zip(self.streams, outs, strict=True):
            p = self.maps[s](o.pooled)
            gated.append(torch.sigmoid(self.gates[s](p)) * p)
            tokens.append(self.maps[s](o.tokens))
        pooled = sum(gated[1:], start=gated[0])
        mask = torch.cat([_token_mask(o) for o in outs], dim=1)
        return EncoderOutput(tokens=torch.cat(tokens, dim=1), pooled=pooled, mask=mask)


class CrossAttentionFusion(Fusion):
    """The first stream's tokens query the other streams' tokens (one pre-LN block)."""

    def __init__(self, stream_widths: dict[str, int], width: int, heads: int) -> None:
        super().__init__(stream_widths, width)
        if len(stream_widths) < 2:
            raise ValueError("cross_attention fusion needs at least two streams")
        check_heads(width, heads)
        self.token_maps = nn.ModuleDict({s: _to_width(d, width) for s, d in stream_widths.items()})
        self.norm_q = nn.LayerNorm(width)
        self.norm_kv = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    @override
    def forward(self, outputs: dict[str, EncoderOutput]) -> EncoderOutput:
        first, *others = self._check(outputs)
        query = self.token_maps[self.streams[0]](first.tokens)
        kv = torch.cat(
            [self.token_maps[s](o.tokens) for s, o in zip(self.streams[1:], others, strict=True)],
            dim=1,
        )
        kv_mask = torch.cat([_token_mask(o) for o in others], dim=1)
        kv_mask = kv_mask | ~kv_mask.any(dim=1, keepdim=True)  # no row attends to nothing
        kv = self.norm_kv(kv)
        attended, _ = self.attn(
            self.norm_q(query), kv, kv, key_padding_mask=~kv_mask, need_weights=False
        )
        tokens = query + attended
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return EncoderOutput(tokens=tokens, pooled=masked_mean(tokens, first.mask), mask=first.mask)


def build_fusion(cfg: FusionConfig, stream_widths: dict[str, int]) -> Fusion:
    """The fusion `cfg` asks for over streams of the given widths (in config order)."""
    width = cfg.width or next(iter(stream_widths.values()))
    if cfg.type == "gated":
        return GatedFusion(stream_widths, width)
    if cfg.type == "cross_attention":
        return CrossAttentionFusion(stream_widths, width, cfg.heads)
    return ConcatFusion(stream_widths, width)
