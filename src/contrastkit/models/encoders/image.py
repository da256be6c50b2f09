"""Image encoders for B x C x H x W inputs: a small conv net and a small ViT."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders.base import ENCODERS, Transformer, check_heads, make_encoder
from contrastkit.models.outputs import EncoderOutput


def _conv_block(cin: int, cout: int, stride: int) -> nn.Module:
    # GroupNorm, not BatchNorm: statistics must not depend on the (micro-)batch, or cached
    # accumulation and distributed runs would see different features for the same sample.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.GELU(),
    )


class ConvEncoder(nn.Module):
    """Conv stem plus `depth` stride-2 stages (channels doubling); tokens are the cells of the
    final feature map, pooled by their mean.

    Args:
        in_channels: image channels C.
        width: output size D (1x1 conv from the last stage).
        depth: number of stride-2 stages (each halves H and W).
        dropout: dropout on tokens.
        channels: channels of the stem (doubled per stage).
    """

    def __init__(
        self, in_channels: int, width: int, depth: int, dropout: float, *, channels: int = 32
    ) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        layers = [_conv_block(in_channels, channels, 1)]
        c = channels
        for _ in range(depth):
            layers += [_conv_block(c, 2 * c, 2), _conv_block(2 * c, 2 * c, 1)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, width, 1)
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.width = width

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        fmap = self.head(self.features(x))  # B x D x h x w
        tokens = self.dropout(self.norm(fmap.flatten(2).transpose(1, 2)))
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(dim=1), mask=None)


class ViTEncoder(nn.Module):
    """Vision Transformer (Dosovitskiy et al. 2021): non-overlapping patches, learned
    positions, a CLS token, pre-LN transformer. Tokens are the patch outputs.

    Args:
        image_shape: (C, H, W); H and W must be multiples of `patch_size`.
        width, depth, heads, dropout: transformer size.
        patch_size: side of a square patch in pixels.
        pool: "cls" (the CLS token) or "mean" (mean of patch tokens).
    """

    def __init__(
        self,
        image_shape: tuple[int, ...],
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        *,
        patch_size: int = 8,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"vit expects images C x H x W, got input shape {image_shape}")
        c, h, w = image_shape
        if patch_size < 1 or h % patch_size or w % patch_size:
            raise ValueError(f"patch_size {patch_size} must divide the image size {h}x{w}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        check_heads(width, heads)
        num_patches = (h // patch_size) * (w // patch_size)
        self.patch = nn.Conv2d(c, width, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, num_patches + 1, width) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.transformer = Transformer(width, depth, heads, dropout)
        self.pool = pool
        self.width = width

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        patches = self.patch(x).flatten(2).transpose(1, 2)  # B x P x D
        cls = self.cls.expand(patches.shape[0], -1, -1)
        h = torch.cat([cls, patches], dim=1) + self.position
        h = self.transformer(self.dropout(h))
        tokens = h[:, 1:]
        pooled = h[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=None)


def _image_shape(input_spec: tuple[int, ...], where: str) -> tuple[int, ...]:
    if len(input_spec) != 3:
        raise ConfigError(f"{where}: expects images C x H x W, got input shape {input_spec}")
    return tuple(input_spec)


@ENCODERS.register("cnn")
def build_cnn(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `cnn` encoder, sized to the image column's channels."""
    shape = _image_shape(input_spec, where)
    return make_encoder(
        ConvEncoder,
        cfg.options,
        where,
        in_channels=shape[0],
        width=cfg.width,
        depth=cfg.depth,
        dropout=cfg.dropout,
    )


@ENCODERS.register("vit")
def build_vit(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `vit` encoder, sized to the image column's shape."""
    return make_encoder(
        ViTEncoder,
        cfg.options,
        where,
        image_shape=_image_shape(input_spec, where),
        width=cfg.width,
        depth=cfg.depth,
        heads=cfg.heads,
        dropout=cfg.dropout,
    )
