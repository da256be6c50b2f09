"""The typed contract between model, losses and the doctor."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class EncoderOutput:
    """What every encoder returns.

    Shape:
        tokens: B x N x D (N may be 1 for vector inputs)
        pooled: B x D
        mask: B x N, True where a token is real (None: all real)
    """

    tokens: Tensor
    pooled: Tensor
    mask: Tensor | None = None


@dataclass
class TowerOutput:
    """One tower after fusion and projection."""

    tokens: Tensor  # B x N x D, fused tokens (what decoders attend to)
    pooled: Tensor  # B x D, before projection (used for drift and probes)
    embedding: Tensor  # B x E, L2-normalised
    mask: Tensor | None = None


@dataclass
class ModelOutput:
    """Everything the losses and monitors need from one forward pass.

    Attributes:
        towers: tower name -> TowerOutput.
        caption_logits: B x (L-1) x V teacher-forced decoder logits (captioning head).
        caption_targets: B x (L-1) next-token ids, -100 where padded.
        masked_prediction / masked_target: B x N x D reconstructed / original tokens.
        masked_mask: B x N bool, True where a token was masked (loss only there).
        class_logits: B x C (classifier head).
    """

    towers: dict[str, TowerOutput]
    caption_logits: Tensor | None = None
    caption_targets: Tensor | None = None
    masked_prediction: Tensor | None = None
    masked_target: Tensor | None = None
    masked_mask: Tensor | None = None
    class_logits: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def embeddings(self) -> dict[str, Tensor]:
        return {name: t.embedding for name, t in self.towers.items()}
