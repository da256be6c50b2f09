"""Multi-positive retrieval metrics in both directions, a→b and b→a, from one chunked pass.

A query's positives are all gallery items of its match group. The ranks come from
`positive_ranks` (ranking.py: one pass over a·bᵀ, pessimistic ties, 1-based ranks)
and the metrics from `summarise_ranks` (rank_metrics.py). Queries whose group has no
gallery item are left out (`num_queries` says how many were scored). Class-level hits
(`label_recall_at_1`) take the top-1 instead of ranking every positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit.errors import DataError
from contrastkit.eval.retrieval.match_groups import _sorted_groups
from contrastkit.eval.retrieval.rank_metrics import summarise_ranks
from contrastkit.eval.retrieval.ranking import positive_ranks


def retrieval_metrics_from_scores(
    scores: Tensor,
    groups_a: Sequence | Tensor,
    groups_b: Sequence | Tensor,
    *,
    ks: Sequence[int] = (1, 5, 10, 50),
    chunk_size: int = 1024,
) -> dict[str, dict[str, float]]:
    """`retrieval_metrics` on a given score matrix (hand-made cases, tie tests)."""
    ga_s, pa, gb_s, pb = _sorted_groups(groups_a, groups_b)
    s = scores[pa.to(scores.device)][:, pb.to(scores.device)]
    a2b, b2a = positive_ranks(
        lambda r0, r1, c0, c1: s[r0:r1, c0:c1],
        ga_s,
        gb_s,
        chunk_size=chunk_size,
        dtype=s.dtype,
        device=s.device,
    )
    return {"a_to_b": summarise_ranks(a2b, ks), "b_to_a": summarise_ranks(b2a, ks)}


def retrieval_metrics(
    a: Tensor,
    b: Tensor,
    groups_a: Sequence | Tensor,
    groups_b: Sequence | Tensor,
    *,
    ks: Sequence[int] = (1, 5, 10, 50),
    chunk_size: int = 1024,
) -> dict[str, dict[str, float]]:
    """All retrieval metrics for a→b and b→a in one chunked pass over a·bᵀ.

    Args:
        a, b: embeddings (L2-normalised for cosine similarity).
        groups_a, groups_b: match group per row (ints or strings); same group = positive.
        ks: cut-offs for Recall@k.
        chunk_size: query rows per chunk.

    Shape:
        a: Na x D, b: Nb x D.

    Returns:
        {"a_to_b": {"R@1", ..., "median_rank", "mean_rank", "NDCG@5", "NDCG@10", "mAP",
        "mAP@R", "num_queries"}, "b_to_a": {...}}.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(
            f"retrieval: embeddings must be Na x D and Nb x D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if len(a) == 0 or len(b) == 0:
        raise DataError("retrieval: both sides need at least one embedding")
    if len(groups_a) != len(a) or len(groups_b) != len(b):
        raise DataError("retrieval: one group id per embedding row is required")
    if chunk_size < 1:
        raise DataError(f"retrieval: chunk_size must be >= 1, got {chunk_size}")
    ga_s, pa, gb_s, pb = _sorted_groups(groups_a, groups_b)
    a_s, b_s = a.detach()[pa.to(a.device)], b.detach()[pb.to(b.device)]

    def score_fn(r0: int, r1: int, c0: int, c1: int) -> Tensor:
        return a_s[r0:r1] @ b_s[c0:c1].T

    dtype = torch.promote_types(a.dtype, b.dtype)
    a2b, b2a = positive_ranks(
        score_fn, ga_s, gb_s, chunk_size=chunk_size, dtype=dtype, device=a.device
    )
    return {"a_to_b": summarise_ranks(a2b, ks), "b_to_a": summarise_ranks(b2a, ks)}


def label_recall_at_1(
    query: Tensor,
    gallery: Tensor,
    labels_query: Tensor,
    labels_gallery: Tensor,
    *,
    chunk_size: int = 4096,
) -> float:
    """Share of queries whose top-1 gallery item has the same class label.

    Queries with label -1 (missing) are left out; the top-1 is taken over all gallery items.
    Ties go to the lowest gallery index.
    """
    keep = labels_query >= 0
    if not bool(keep.any()):
        return math.nan
    q = query.detach()[keep.to(query.device)]
    hits = 0
    for r0 in range(0, len(q), chunk_size):
        top = (q[r0 : r0 + chunk_size] @ gallery.detach().T).argmax(dim=1).cpu()
        hits += int((labels_gallery.cpu()[top] == labels_query[keep][r0 : r0 + chunk_size]).sum())
    return hits / int(keep.sum())
