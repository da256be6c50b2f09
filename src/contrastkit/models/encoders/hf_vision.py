"""Pretrained Hugging Face vision backbones from a local folder (never downloaded).

`hf_vision` wraps ViT, DINOv2, DeiT, BEiT, CLIPVisionModel, SiglipVisionModel (and the
vision half of a whole CLIP / SigLIP folder). Pixels are prepared the model's way, from the
image-processor config saved beside the weights (`preprocessor_config.json`): contrastkit's
loader hands every image encoder pixels normalised as (x - 0.5) / 0.5; this encoder undoes
that, makes 3 channels, resizes to the model's size and normalises with the model's own
mean / std, so a user cannot feed it differently-normalised pixels.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders.base import ENCODERS, make_encoder
from contrastkit.models.outputs import EncoderOutput

log = logging.getLogger(__name__)

_INSTALL_HINT = "pip install contrastkit[text]"
# contrastkit's image loader normalises pixels as (x - LOADER_MEAN) / LOADER_STD.
LOADER_MEAN = LOADER_STD = 0.5
# Fallback when a folder has no image-processor config: the mean/std most ViT checkpoints
# (google/vit-*, CLIP-like 0.5 variants) were trained with is 0.5, so that is the least bad.
FALLBACK_MEAN = FALLBACK_STD = (0.5, 0.5, 0.5)
# model_type of the configs whose AutoModel is a vision backbone.
VISION_TYPES = ("vit", "dinov2", "deit", "beit", "clip_vision_model", "siglip_vision_model")
# Whole dual-encoder folders: their vision half is used.
DUAL_TYPES = ("clip", "siglip")
# Pooled output per model type when `pool: auto`: the model's own pooler where it is part
# of its pretraining (CLIP/SigLIP heads, DINOv2's normed CLS); the CLS token otherwise
# (ViT's pooler is an untrained dense layer in most checkpoints).
POOLER_TYPES = ("clip_vision_model", "siglip_vision_model", "dinov2", "clip", "siglip")


def require_dir(path: str | None, where: str, kind: str) -> str:
    """`path` as a string when it is an existing folder, else a ConfigError naming the key."""
    if not path:
        raise ConfigError(f"{where}.pretrained: {kind} needs a local Hugging Face model folder")
    if not Path(path).is_dir():
        raise ConfigError(f"{where}.pretrained: {path} is not a local model folder")
    return str(path)


def transformers_module(where: str) -> Any:
    """The `transformers` package, or a ConfigError naming `where` and how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError(f"{where}: needs the `transformers` package: {_INSTALL_HINT}") from None
    return transformers


def model_type(path: str, where: str) -> str:
    """`model_type` from the folder's config.json (ConfigError naming the key if unreadable)."""
    try:
        return str(json.loads((Path(path) / "config.json").read_text())["model_type"])
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(
            f"{where}.pretrained: {path} has no readable config.json: {err}"
        ) from None


def pixel_settings(path: str, fallback_size: int) -> tuple[int, int, list[float], list[float]]:
    """(height, width, mean, std) from `preprocessor_config.json` (crop size wins over
    resize size: it is what the model saw)."""
    file = Path(path) / "preprocessor_config.json"
    if not file.is_file():
        log.warning(
            "%s has no preprocessor_config.json: using %dpx and mean/std %s",
            path,
            fallback_size,
            FALLBACK_MEAN,
        )
        return fallback_size, fallback_size, list(FALLBACK_MEAN), list(FALLBACK_STD)
    proc = json.loads(file.read_text())
    size = proc.get("crop_size") if proc.get("do_center_crop") else None
    size = size or proc.get("size") or fallback_size
    if isinstance(size, dict):
        h = size.get("height") or size.get("shortest_edge") or fallback_size
        w = size.get("width") or size.get("shortest_edge") or fallback_size
    else:
        h = w = int(size)
    mean = proc.get("image_mean", FALLBACK_MEAN)
    std = proc.get("image_std", FALLBACK_STD)
    mean = [float(mean)] * 3 if isinstance(mean, int | float) else [float(m) for m in mean]
    std = [float(std)] * 3 if isinstance(std, int | float) else [float(s) for s in std]
    return int(h), int(w), mean, std


class PixelPrep(nn.Module):
    """contrastkit pixels ((x - 0.5) / 0.5, 1 or 3 channels) -> the model's pixel values.

    Shape:
        B x C x H x W -> B x 3 x height x width
    """

    mean: Tensor  # buffers (1 x C x 1 x 1)
    std: Tensor

    def __init__(self, height: int, width: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.size = (height, width)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @override
    def forward(self, x: Tensor) -> Tensor:
        x = (x * LOADER_STD + LOADER_MEAN).clamp(0.0, 1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != self.size:
            shrink = x.shape[-1] > self.size[1] or x.shape[-2] > self.size[0]
            x = F.interpolate(
                x, size=self.size, mode="bilinear", align_corners=False, antialias=shrink
            )
        return (x - self.mean) / self.std


def load_vision_model(path: str, where: str) -> tuple[nn.Module, str]:
    """The vision backbone in `path` and its model_type (a CLIP/SigLIP folder: its vision half).

    Raises:
        ConfigError: the folder holds no vision model (names the key and the model type).
    """
    tf = transformers_module(where)
    kind = model_type(path, where)
    try:
        if kind == "clip":
            return tf.CLIPVisionModel.from_pretrained(path, local_files_only=True), kind
        if kind == "siglip":
            return tf.SiglipVisionModel.from_pretrained(path, local_files_only=True), kind
        if kind not in VISION_TYPES:
            raise ConfigError(
                f"{where}.pretrained: {path} holds a {kind!r} model, not a vision model; "
                f"hf_vision takes {', '.join(VISION_TYPES + DUAL_TYPES)} "
                "(use hf_text for text models)"
            )
        return tf.AutoModel.from_pretrained(path, local_files_only=True), kind
    except (OSError, ValueError) as err:
        raise ConfigError(f"{where}.pretrained: cannot load {path}: {err}") from None


class HFVisionEncoder(nn.Module):
    """A local vision backbone; tokens are its last hidden state (CLS + patches).

    Args:
        path: local model folder (config, weights, preprocessor_config.json).
        where: config path for error messages.
        pool: "auto", "cls" (first token), "mean" (mean of the patch tokens) or "pooler"
            (the model's pooler output).
    """

    def __init__(self, path: str, where: str, *, pool: str = "auto") -> None:
        super().__init__()
        if pool not in ("auto", "cls", "mean", "pooler"):
            raise ValueError(f"pool must be auto, cls, mean or pooler, got {pool!r}")
        self.model, kind = load_vision_model(path, where)
        cfg: Any = self.model.config  # a transformers PretrainedConfig
        self.pool = pool if pool != "auto" else ("pooler" if kind in POOLER_TYPES else "cls")
        self.prep = PixelPrep(*pixel_settings(path, int(getattr(cfg, "image_size", 224))))
        self.width = int(cfg.hidden_size)
        self.path = path
        self.pretrained = True
        self.embedding_output = False  # backbone features, not a contrastive embedding

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> EncoderOutput:
        out = self.model(pixel_values=self.prep(x))
        tokens = out.last_hidden_state
        if self.pool == "pooler":
            if getattr(out, "pooler_output", None) is None:
                raise ConfigError(f"{self.path}: this model has no pooler; use pool: cls or mean")
            pooled = out.pooler_output
        elif self.pool == "cls":
            pooled = tokens[:, 0]
        else:  # SigLIP has no CLS token: every token is a patch
            has_cls = getattr(self.model.config, "model_type", "") != "siglip_vision_model"
            pooled = tokens[:, 1:].mean(dim=1) if has_cls else tokens.mean(dim=1)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=None)


@ENCODERS.register("hf_vision")
def build_hf_vision(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `hf_vision` encoder: a local Hugging Face vision model (ViT, DINOv2, SigLIP vision...)."""
    path = require_dir(cfg.pretrained, where, "hf_vision")
    if len(input_spec) != 3:
        raise ConfigError(f"{where}: hf_vision needs an image column (C x H x W), got {input_spec}")
    return make_encoder(HFVisionEncoder, cfg.options, where, path=path, where=where)
