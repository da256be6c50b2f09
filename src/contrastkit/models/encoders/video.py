"""Video encoder: a frame encoder per frame, a temporal aggregator, optional view pooling.

Single clip: B x T x C x H x W -> tokens B x T x D (one per frame), pooled B x D.
Multi-view study (e.g. several echocardiography views): B x V x T x C x H x W with
`video_view_mask` B x V -> every view is encoded alone, the study embedding pools the valid
views, and tokens are all views' frame tokens (V*T of them) with padding views masked out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import EncoderConfig
from contrastkit.models.encoders.base import (
    ENCODERS,
    AttentionPool,
    Transformer,
    make_encoder,
    make_nested,
    masked_mean,
)
from contrastkit.models.encoders.image import ConvEncoder, ViTEncoder
from contrastkit.models.outputs import EncoderOutput

_TEMPORAL = ("mean", "attention", "transformer")
_VIEWS = ("mean", "attention")


class VideoEncoder(nn.Module):
    """Frame encoder + temporal aggregation (+ view aggregation for multi-view input).

    Args:
        clip_shape: (T, C, H, W) or (V, T, C, H, W) of one sample.
        width, depth, heads, dropout: frame-encoder size (depth = its stages / layers).
        where: config path for nested option errors.
        frame_encoder: "cnn" or "vit".
        frame_options: options of the frame encoder (e.g. `{patch_size: 8}` for vit).
        temporal: "mean" over frames, "attention" (learned-query attention pooling) or
            "transformer" (a transformer over frames, then mean).
        temporal_depth: layers of the temporal transformer.
        views: "mean" over valid views or "attention" pooling over them.
    """

    def __init__(
        self,
        clip_shape: tuple[int, ...],
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        where: str,
        *,
        frame_encoder: str = "cnn",
        frame_options: dict[str, Any] | None = None,
        temporal: str = "mean",
        temporal_depth: int = 1,
        views: str = "mean",
    ) -> None:
        super().__init__()
        if len(clip_shape) not in (4, 5):
            raise ValueError(f"video expects T x C x H x W or V x T x C x H x W, got {clip_shape}")
        if temporal not in _TEMPORAL:
            raise ValueError(f"temporal must be one of {_TEMPORAL}, got {temporal!r}")
        if views not in _VIEWS:
            raise ValueError(f"views must be one of {_VIEWS}, got {views!r}")
        self.multi_view = len(clip_shape) == 5
        frames, *image_shape = clip_shape[-4:]
        nested = f"{where}.options.frame_options"
        fixed: dict[str, Any]
        if frame_encoder == "cnn":
            fixed = {
                "in_channels": image_shape[0],
                "width": width,
                "depth": depth,
                "dropout": dropout,
            }
            self.frame = make_nested(ConvEncoder, frame_options or {}, nested, **fixed)
        elif frame_encoder == "vit":
            fixed = {
                "image_shape": tuple(image_shape),
                "width": width,
                "depth": depth,
                "heads": heads,
                "dropout": dropout,
            }
            self.frame = make_nested(ViTEncoder, frame_options or {}, nested, **fixed)
        else:
            raise ValueError(f"frame_encoder must be 'cnn' or 'vit', got {frame_encoder!r}")
        self.time_position = nn.Parameter(torch.randn(1, frames, width) * 0.02)
        self.temporal = temporal
        self.temporal_pool = AttentionPool(width, heads) if temporal == "attention" else None
        self.temporal_mixer = (
            Transformer(width, temporal_depth, heads, dropout)
            if temporal == "transformer"
            else None
        )
        self.view_pool = AttentionPool(width, heads) if views == "attention" else None
        self.width = width

    def _clip(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encode clips n x T x C x H x W -> (tokens n x T x D, pooled n x D)."""
        n, t = x.shape[:2]
        if t > self.time_position.shape[1]:
            raise ValueError(
                f"clip has {t} frames, the encoder was built for {self.time_position.shape[1]}"
            )
        frames = self.frame(x.reshape(n * t, *x.shape[2:])).pooled.view(n, t, -1)
        tokens = frames + self.time_position[:, :t]
        if self.temporal_mixer is not None:
            tokens = self.temporal_mixer(tokens)
        pooled = (
            self.temporal_pool(tokens) if self.temporal_pool is not None else tokens.mean(dim=1)
        )
        return tokens, pooled

    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        """`mask` is the B x V view mask for multi-view input (None: all views valid)."""
        if x.dim() == 5:
            tokens, pooled = self._clip(x)
            return EncoderOutput(tokens=tokens, pooled=pooled, mask=None)
        b, v, t = x.shape[:3]
        tokens, pooled = self._clip(x.reshape(b * v, *x.shape[2:]))
        pooled = pooled.view(b, v, -1)
        view_mask = torch.ones(b, v, dtype=torch.bool, device=x.device) if mask is None else mask
        if self.view_pool is not None:
            study = self.view_pool(pooled, view_mask)
        else:
            study = masked_mean(pooled, view_mask)
        token_mask = view_mask.repeat_interleave(t, dim=1)  # B x (V*T)
        return EncoderOutput(tokens=tokens.reshape(b, v * t, -1), pooled=study, mask=token_mask)


@ENCODERS.register("video")
def build_video(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `video` encoder, sized to the clip column's shape."""
    return make_encoder(
        VideoEncoder,
        cfg.options,
        where,
        clip_shape=tuple(input_spec),
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        dropout=cfg.dropout,
        where=where,
    )
