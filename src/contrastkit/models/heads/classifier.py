"""Classification head on a tower's pooled features (auxiliary supervised objective).

Term `classification`: YAML `model.classification` (the head) and `loss.classification`
(its weight), outputs `output.heads["classification"]["logits"]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import AuxTermConfig, HeadConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.models.outputs import TermSum, TowerOutput
from contrastkit.registry import HEADS

MISSING_LABEL = -1  # rows without a class label


class ClassifierHead(nn.Module):
    """Linear classifier, or a one-hidden-layer MLP when ``hidden`` is set.

    A linear head keeps the auxiliary loss close to a linear probe, so it shapes the pooled
    features themselves; an MLP gives the classifier its own capacity and leaves more room in
    the shared representation.

    Args:
        dim: D, width of the pooled features.
        num_classes: C.
        hidden: width of the hidden layer (None: linear head).
        dropout: dropout on the features fed to the last linear layer.
    """

    def __init__(
        self, dim: int, num_classes: int, hidden: int | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if hidden is None:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))
        else:
            self.net = nn.Sequential(
                nn.Linear(dim, hidden),
                nn.GELU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, num_classes),
            )

    def forward(self, pooled: Tensor) -> Tensor:
        """Map pooled features B x D to class logits B x C."""
        return self.net(pooled)

    def run(self, tower: TowerOutput, batch: Mapping[str, Any], tokenizer: Any) -> dict:
        """The head's outputs for one batch: {"logits": B x C}."""
        del batch, tokenizer
        return {"logits": self(tower.pooled)}


def classification_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> TermSum:
    """Cross-entropy summed over rows with a known label (label −1 = missing, skipped).

    Shape:
        logits: B x C; labels: B.
    """
    if labels.numel() and labels.max() >= logits.shape[1]:
        raise DataError(
            f"label index {int(labels.max())} is out of range for {logits.shape[1]} classes "
            "(check the manifest's `label` column and model.classification.num_classes)"
        )
    total = F.cross_entropy(
        logits,
        labels,
        ignore_index=MISSING_LABEL,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return TermSum.over(total, labels != MISSING_LABEL)


@HEADS.register("classification")
class ClassificationHeadConfig(HeadConfig):
    """`model.classification`: a classifier on `tower`'s pooled features."""

    num_classes: int | None = Field(None, ge=2, description="default: from the manifest's labels")
    hidden: int | None = Field(None, ge=1, description="hidden width of an MLP head; null: linear")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the last layer")

    @override
    def build(self, width: int, tokenizer: Any, num_classes: int | None) -> ClassifierHead:
        classes = self.num_classes or num_classes
        if not classes or classes < 2:
            raise ConfigError(
                f"model.classification needs num_classes >= 2 (got {classes}): set "
                "model.classification.num_classes or give the manifest a label column"
            )
        return ClassifierHead(width, classes, self.hidden, self.dropout)

    @staticmethod
    @override
    def loss(outputs: dict, batch: Mapping[str, Any], term: AuxTermConfig) -> TermSum:
        if "label" not in batch:
            raise DataError("loss.classification is set but the batch has no `label` column")
        return classification_loss(outputs["logits"], batch["label"], term.label_smoothing)
