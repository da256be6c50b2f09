"""Sum/count bookkeeping of a step's loss terms across micro-batches and ranks.

Every per-unit term reports a total and a count; a micro-batch's backward carries its
`total · W / C` with C the step's global count, and the log divides Σ totals by Σ counts
once, so accumulation gives the full batch's numbers. Row-coupling terms arrive as values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit.losses.reduction import (
    add_counts,
    add_totals,
    global_counts,
    global_means,
    share_of_mean,
)
from contrastkit.losses.result import LossOutput, TermSum, result_stats


def weighted_sum(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor | None:
    """Sum of weight x term over terms with a non-zero weight (None if there are none)."""
    parts = [weights[k] * v for k, v in terms.items() if weights.get(k, 0.0) != 0.0]
    return torch.stack([p.reshape(()) for p in parts]).sum() if parts else None


def weighted_sums(
    sums: dict[str, TermSum], counts: dict[str, Tensor], weights: dict[str, float]
) -> Tensor | None:
    """This micro-batch's weighted part of every weighted per-unit term (total · W / C)."""
    return weighted_sum(
        {k: share_of_mean(v, counts[k]) for k, v in sums.items() if weights.get(k, 0.0)},
        weights,
    )


def reported_sums(pieces: Sequence[dict[str, TermSum]]) -> dict[str, Tensor]:
    """Per-unit terms of the whole step, for the log: Σ totals / Σ counts (all ranks)."""
    return global_means(add_totals(pieces), global_counts(add_counts(pieces)))


def loss_output(terms: dict[str, Tensor], weights: dict[str, float], results: dict) -> LossOutput:
    """The step's LossOutput from its merged (detached) terms."""
    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    return LossOutput(
        total=torch.as_tensor(total),
        terms=terms,
        weights=dict(weights),
        stats=result_stats(results),
        results=results,
    )
