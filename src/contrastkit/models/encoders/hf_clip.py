"""A whole pretrained CLIP or SigLIP model (CLIPModel / SiglipModel) from one local folder.

Both towers name the same folder; each takes its half (a text column gets the text model,
its tokenizer and `text_projection`; an image column gets the vision model, the folder's
pixel preprocessing and `visual_projection`), so the pooled output is already the model's
contrastive embedding and `projection: auto` adds nothing on top. The model's learned
`logit_scale` (and SigLIP's `logit_bias`) become the objective's initial values through
`with_pretrained_logits`, so step 0 is the zero-shot model, temperature included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import EncoderConfig, LossConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders.base import ENCODERS, make_encoder
from contrastkit.models.encoders.hf_vision import (
    DUAL_TYPES,
    PixelPrep,
    model_type,
    pixel_settings,
    require_dir,
    transformers_module,
)
from contrastkit.models.outputs import EncoderOutput


class HFClipEncoder(nn.Module):
    """One half of a CLIP / SigLIP model.

    Args:
        path: local folder of a CLIPModel or SiglipModel (+ tokenizer, preprocessor config).
        where: config path for error messages.
        side: "text" or "image".
        max_length: text tokens kept (default: the model's position count).
    """

    def __init__(self, path: str, where: str, side: str, *, max_length: int | None = None) -> None:
        super().__init__()
        tf = transformers_module(where)
        kind = model_type(path, where)
        if kind not in DUAL_TYPES:
            raise ConfigError(
                f"{where}.pretrained: {path} holds a {kind!r} model; hf_clip takes a whole "
                "CLIP or SigLIP folder (use hf_vision / hf_text for one tower)"
            )
        cls = tf.CLIPModel if kind == "clip" else tf.SiglipModel
        try:
            full = cls.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{where}.pretrained: cannot load {path}: {err}") from None
        self.kind, self.side, self.path = kind, side, path
        self.logit_scale = float(full.logit_scale.detach())
        bias = getattr(full, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.detach())
        if side == "image":
            self.model = full.vision_model
            self.head = getattr(full, "visual_projection", None)
            vcfg = full.config.vision_config
            self.prep = PixelPrep(*pixel_settings(path, int(vcfg.image_size)))
            hidden = int(vcfg.hidden_size)
        else:
            self.model = full.text_model
            self.head = getattr(full, "text_projection", None)
            tcfg = full.config.text_config
            try:
                self.hf_tokenizer = tf.AutoTokenizer.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError) as err:
                raise ConfigError(f"{where}.pretrained: no tokenizer in {path}: {err}") from None
            self.max_length = int(max_length or tcfg.max_position_embeddings)
            hidden = int(tcfg.hidden_size)
        self.width = int(self.head.out_features) if self.head is not None else hidden
        self.pretrained = True
        self.embedding_output = True  # the pooled output is the model's own embedding

    @override
    def forward(self, x: Any, mask: Tensor | None = None) -> EncoderOutput:
        if self.side == "image":
            out = self.model(pixel_values=self.prep(x))
            token_mask = None
        else:
            device = next(self.model.parameters()).device
            # SigLIP was trained on texts padded to the full length (its pooled token is
            # the last position); CLIP pools the end-of-text token, so padding is free.
            padding = "max_length" if self.kind == "siglip" else "longest"
            enc = self.hf_tokenizer(
                list(_texts(x)),
                padding=padding,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(device)
            inputs = {"input_ids": enc["input_ids"]}
            if self.kind == "clip":
                inputs["attention_mask"] = enc["attention_mask"]
            out = self.model(**inputs)
            token_mask = enc["attention_mask"].bool()
        pooled, tokens = out.pooler_output, out.last_hidden_state
        if self.head is not None:
            pooled, tokens = self.head(pooled), self.head(tokens)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=token_mask)


def _texts(x: Sequence[str]) -> list[str]:
    return [str(t) for t in x]


@ENCODERS.register("hf_clip")
def build_hf_clip(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `hf_clip` encoder: one side of a local CLIP/SigLIP model (image side for images, else text)."""
    path = require_dir(cfg.pretrained, where, "hf_clip")
    side = "image" if len(input_spec) == 3 else "text"
    return make_encoder(HFClipEncoder, cfg.options, where, path=path, where=where, side=side)


def _clip_encoder(model: Any, tower: str) -> HFClipEncoder | None:
    t = model.towers[tower]
    encoders = list(t.encoders.values())
    if len(encoders) == 1 and isinstance(encoders[0], HFClipEncoder):
        return encoders[0]
    return None


def with_pretrained_logits(loss: LossConfig, model: Any) -> LossConfig:
    """`loss` with each objective between two halves of one CLIP/SigLIP folder starting at
    that model's learned scale (and bias); values the user set explicitly are kept."""
    objectives = []
    for obj in loss.objectives:
        encs = [_clip_encoder(model, t) for t in obj.towers]
        if len(encs) != 2 or None in encs or encs[0].path != encs[1].path:  # type: ignore[union-attr]
            objectives.append(obj)
            continue
        enc = encs[0]
        assert enc is not None
        updates: dict[str, float] = {}
        if obj.type == "clip" and "temperature" not in obj.model_fields_set:
            # A clip objective (ClipObjective lives in losses/, which models must not import).
            ceiling = obj.max_logit_scale  # type: ignore[attr-defined]
            scale = min(math.exp(enc.logit_scale), ceiling)
            updates["temperature"] = 1.0 / scale
        if obj.type == "siglip":
            if "init_logit_scale" not in obj.model_fields_set:
                updates["init_logit_scale"] = enc.logit_scale
            if enc.logit_bias is not None and "init_logit_bias" not in obj.model_fields_set:
                updates["init_logit_bias"] = enc.logit_bias
        objectives.append(obj.model_copy(update=updates))
    return loss.model_copy(update={"objectives": objectives})
