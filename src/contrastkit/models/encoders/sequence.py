"""Transformer over time for padded sequences such as keypoints (B x T x J x C).

Train-time augmentations (temporal jitter, Gaussian noise, random frame masking) run only
in training mode and draw from torch's global RNG, so the engine can replay a micro-batch
exactly (cached-feature accumulation re-runs the forward under the saved RNG state).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import EncoderConfig
from contrastkit.models.encoders.base import ENCODERS, Transformer, make_encoder, masked_mean
from contrastkit.models.outputs import EncoderOutput


def temporal_jitter(x: Tensor, mask: Tensor, max_shift: int) -> tuple[Tensor, Tensor]:
    """Shift each sequence left by a random 0..max_shift frames (a random temporal crop),
    never dropping its last real frame; vacated frames at the end become padding."""
    b, t = mask.shape
    lengths = mask.sum(dim=1)
    high = torch.minimum(lengths - 1, torch.full_like(lengths, max_shift)).clamp(min=0)
    shift = (torch.rand(b, device=x.device) * (high + 1).to(x.dtype)).long().clamp(max=high)
    index = torch.arange(t, device=x.device).unsqueeze(0) + shift.unsqueeze(1)  # B x T
    valid = index < t
    index = index.clamp(max=t - 1)
    x = torch.gather(x, 1, index.view(b, t, 1).expand_as(x))
    return x, torch.gather(mask, 1, index) & valid


def random_frame_mask(mask: Tensor, ratio: float) -> Tensor:
    """Hide about `ratio` of the real frames from attention, keeping at least one per row."""
    keep = mask & (torch.rand(mask.shape, device=mask.device) >= ratio)
    first_real = torch.zeros_like(mask)
    first_real.scatter_(1, mask.long().argmax(dim=1, keepdim=True), True)
    empty = ~keep.any(dim=1, keepdim=True)
    return keep | (empty & first_real & mask)


class SequenceEncoder(nn.Module):
    """Per-frame linear embedding of the J x C values, learned time positions, pre-LN
    transformer, masked mean over real frames.

    Args:
        sequence_shape: (T, J, C) of one sample (T = longest sequence).
        width, depth, heads, dropout: transformer size.
        jitter: max random left shift in frames (0 = off).
        noise: std of Gaussian noise added to the values (0 = off).
        mask_ratio: share of real frames hidden at random (0 = off).
    """

    def __init__(
        self,
        sequence_shape: tuple[int, ...],
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        *,
        jitter: int = 0,
        noise: float = 0.0,
        mask_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if len(sequence_shape) < 2:
            raise ValueError(f"sequence expects T x J x C (or T x F), got {sequence_shape}")
        if jitter < 0 or noise < 0 or not 0 <= mask_ratio < 1:
            raise ValueError("jitter >= 0, noise >= 0 and 0 <= mask_ratio < 1 are required")
        frames = sequence_shape[0]
        in_dim = 1
        for s in sequence_shape[1:]:
            in_dim *= s
        self.embed = nn.Linear(in_dim, width)
        self.position = nn.Parameter(torch.randn(1, frames, width) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.transformer = Transformer(width, depth, heads, dropout)
        self.jitter, self.noise, self.mask_ratio = jitter, noise, mask_ratio
        self.width = width

    def augment(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The train-time augmentations (call only in training mode)."""
        if self.jitter:
            x, mask = temporal_jitter(x, mask, self.jitter)
        if self.noise:
            x = x + torch.randn_like(x) * self.noise
        if self.mask_ratio:
            mask = random_frame_mask(mask, self.mask_ratio)
        return x, mask

    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        """x: B x T x J x C (or B x T x F); mask: B x T, True = real frame."""
        b, t = x.shape[:2]
        if t > self.position.shape[1]:
            raise ValueError(
                f"sequence has {t} frames, the encoder was built for {self.position.shape[1]}"
            )
        x = x.reshape(b, t, -1)
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=x.device)
        if self.training:
            x, mask = self.augment(x, mask)
        h = self.embed(x) + self.position[:, :t]
        tokens = self.transformer(self.dropout(h), mask)
        return EncoderOutput(tokens=tokens, pooled=masked_mean(tokens, mask), mask=mask)


@ENCODERS.register("sequence")
def build_sequence(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `sequence` encoder, sized to the sequence column's shape."""
    return make_encoder(
        SequenceEncoder,
        cfg.options,
        where,
        sequence_shape=tuple(input_spec),
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        dropout=cfg.dropout,
    )
