"""The typed contract between model, losses and the doctor."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
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
class TermSum:
    """A loss term that averages over its own units (labelled rows, real tokens, masked
    tokens), given as the SUM over those units and their COUNT.

    The term's value is `total / count` over the whole step batch. Micro-batches (and
    ranks) add their totals and counts before the one division, so accumulation gives the
    full-batch term exactly; averaging per-micro-batch means weighted by rows would not
    (a micro-batch without labels would still take its row share).

    Attributes:
        total: sum of the per-unit losses (carries the graph).
        count: number of units scored, a 0-dim float tensor without gradient.
    """

    total: Tensor
    count: Tensor

    @classmethod
    def over(cls, total: Tensor, scored: Tensor) -> TermSum:
        """`total` over the True entries of `scored`; the count is kept in float32 at least
        (exact up to 2^24 units, where a bf16 count would already round above 256)."""
        return cls(total, scored.sum().to(torch.promote_types(total.dtype, torch.float32)))

    def mean(self) -> Tensor:
        """total / count of this term alone (0, still on the graph, when nothing is scored)."""
        return self.total / self.count.clamp_min(1.0)


@dataclass
class ModelOutput:
    """Everything the losses and monitors need from one forward pass.

    Attributes:
        towers: tower name -> TowerOutput.
        heads: loss-term name -> that head's outputs, e.g. `classification`: {"logits":
            B x C}; `captioning`: {"logits": B x (L-1) x V, "targets": B x (L-1), −100
            where padded}; `masked`: {"prediction", "target": B x N x D, "mask": B x N bool,
            True where a token was masked}. A head whose inputs were absent is missing.
        extras: other tensors, e.g. `teacher:<tower>` embeddings for distillation.
    """

    towers: dict[str, TowerOutput]
    heads: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def embeddings(self) -> dict[str, Tensor]:
        """Each tower's embedding, keyed by tower name."""
        return {name: t.embedding for name, t in self.towers.items()}
