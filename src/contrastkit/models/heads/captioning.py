"""Captioning head: a decoder that writes the text from an encoder's tokens, and its loss.

The auxiliary captioning objective of CoCa (Yu et al. 2022, "CoCa: Contrastive Captioners
are Image-Text Foundation Models") and LocCa (Wan et al. 2024, "LocCa: Visual Pretraining
with Location-aware Captioners"): a decoder cross-attends to the encoder tokens and is
trained with teacher forcing, so the encoder must keep the details a caption needs
(numbers, locations) that a pooled contrastive embedding may drop.

Term `captioning`: YAML `model.captioning` (the head) and `loss.captioning` (its weight),
outputs `output.heads["captioning"]` = {"logits", "targets"}. The decoder network is in
`captioning_decoder` (its blocks in `decoder_block`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from typing_extensions import override

from contrastkit.config import AuxTermConfig, HeadConfig
from contrastkit.models.heads.captioning_decoder import IGNORE_INDEX, CaptioningDecoder
from contrastkit.models.outputs import TermSum
from contrastkit.registry import HEADS

DEFAULT_TEXT_LENGTH = 48  # decoder positions when the tokenizer does not say


def captioning_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> TermSum:
    """Teacher-forced next-token cross-entropy summed over real (non-padded) targets.

    Shape:
        logits: B x L x V; targets: B x L (−100 where padded).
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return TermSum.over(total, targets != IGNORE_INDEX)


@HEADS.register("captioning")
class CaptioningHeadConfig(HeadConfig):
    """`model.captioning`: a decoder that writes `text_column` from `tower`'s tokens."""

    tower: str = Field(..., description="tower whose tokens the decoder attends to")
    width: int = Field(128, ge=8, description="decoder width")
    depth: int = Field(2, ge=1, description="decoder blocks")
    heads: int = Field(4, ge=1, description="attention heads; must divide width")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in the decoder")
    text_column: str = Field("text", description="batch column the decoder learns to write")

    @override
    def build(self, width: int, tokenizer: Any, num_classes: int | None) -> CaptioningDecoder:
        return CaptioningDecoder(
            vocab_size=tokenizer.vocab_size,
            memory_dim=width,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            dropout=self.dropout,
            max_length=int(getattr(tokenizer, "max_length", DEFAULT_TEXT_LENGTH)),
            pad_id=tokenizer.pad_id,
            bos_id=tokenizer.bos_id,
            eos_id=tokenizer.eos_id,
            text_column=self.text_column,
        )

    @staticmethod
    @override
    def loss(outputs: dict, batch: Mapping[str, Any], term: AuxTermConfig) -> TermSum:
        return captioning_loss(outputs["logits"], outputs["targets"], term.label_smoothing)
