"""Classification head on a tower's pooled features (auxiliary supervised objective)."""

from __future__ import annotations

from torch import Tensor, nn


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
