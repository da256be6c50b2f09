"""Mined hard negatives with a positive-aware false-negative guard (NV-Retriever, Moreira
et al. 2024).

For every training row `i` (a query on one tower, e.g. a docstring) the miner ranks the
other tower's embeddings of every training row (e.g. all code) and keeps, among rows of
*other* groups, the `k` highest-scoring ones after

1. skipping the `skip_top` best candidates (the very top is where unlabelled duplicates
   of the positive sit), and
2. dropping every candidate whose score is >= `max_score_ratio` x the score of row i's own
   positive (a candidate that the model scores as high as the true answer is more likely
   a second correct answer than a negative: "TopK-PercPos" in NV-Retriever).

The scan is chunked (at most `chunk_rows` x N scores in memory); with faiss installed an
exact inner-product index (`IndexFlatIP`) returns the candidates instead. The batch sampler
(`samplers.HardNegativeBatchSampler`) then puts each query's negatives in its batch.

The statistics (`MiningStats`) are what the doctor reports: the mean gap between a row's
positive score and its kept negatives' scores, and the share of the top-k candidates
(what mining without the guard would take) that score above their own positive (most of them above it is the sign of duplicates filed
under different groups, or of a model that has not learned the task).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Candidates fetched per query before the guard: skip_top + CANDIDATE_FACTOR * k. The guard
# drops some, so fetching only k would often leave fewer than k; 4x keeps k in practice
# (NV-Retriever keeps the top k after its threshold from a similarly padded list).
CANDIDATE_FACTOR = 4
# Query rows scored against the whole gallery at once on the torch path (x N floats).
CHUNK_ROWS = 1024


@dataclass
class MiningStats:
    """What mining found, for the log and the doctor.

    Attributes:
        queries: rows mined for.
        mean_kept: average number of negatives kept per row (<= k).
        score_gap: mean of (positive score - kept negative score) over kept negatives.
        above_positive: share of the top-k candidates plain mining would take (after
            skip_top, before the guard) that score above their row's positive.
        dropped_by_guard: share of those top-k candidates that the guard removes.
    """

    queries: int
    mean_kept: float
    score_gap: float
    above_positive: float
    dropped_by_guard: float

    def as_dict(self) -> dict[str, float]:
        """The statistics as floats (for findings and logs)."""
        return {
            "queries": float(self.queries),
            "mean_kept": self.mean_kept,
            "score_gap": self.score_gap,
            "above_positive": self.above_positive,
            "dropped_by_guard": self.dropped_by_guard,
        }


def _candidates_torch(
    query: Tensor, gallery: Tensor, groups: Tensor, m: int, chunk_rows: int
) -> tuple[Tensor, Tensor]:
    """Top-m gallery rows of other groups per query: (scores N x m, indices N x m)."""
    scores_out, index_out = [], []
    for start in range(0, len(query), chunk_rows):
        s = query[start : start + chunk_rows] @ gallery.T
        same = groups[start : start + chunk_rows, None] == groups[None, :]
        s = s.masked_fill(same, float("-inf"))
        top = s.topk(m, dim=1)
        scores_out.append(top.values)
        index_out.append(top.indices)
    return torch.cat(scores_out), torch.cat(index_out)


def _candidates_faiss(
    query: Tensor, gallery: Tensor, groups: Tensor, m: int
) -> tuple[Tensor, Tensor]:
    """Same as `_candidates_torch` from an exact faiss inner-product index: it cannot mask
    groups, so it fetches m + (largest group) rows and drops same-group ones."""
    import faiss

    largest = int(torch.unique(groups, return_counts=True)[1].max())
    fetch = min(len(gallery), m + largest)
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery.numpy().astype(np.float32))
    scores, indices = index.search(query.numpy().astype(np.float32), fetch)
    scores_t, indices_t = torch.from_numpy(scores), torch.from_numpy(indices).long()
    same = groups[indices_t] == groups[:, None]
    scores_t = scores_t.masked_fill(same, float("-inf"))
    # Stable re-sort pushes the masked rows to the end, keeping faiss's order otherwise.
    order = torch.sort(scores_t, dim=1, descending=True, stable=True).indices[:, :m]
    return scores_t.gather(1, order), indices_t.gather(1, order)


def mine_hard_negatives(
    query: Tensor,
    gallery: Tensor,
    groups: Tensor | np.ndarray,
    *,
    k: int,
    skip_top: int = 0,
    max_score_ratio: float = 0.95,
    backend: str = "auto",
    chunk_rows: int = CHUNK_ROWS,
) -> tuple[np.ndarray, MiningStats]:
    """Row indices of each row's hard negatives.

    Args:
        query: N x E query embeddings, row i = training row i (L2-normalised).
        gallery: N x E gallery embeddings of the same rows (row i is i's positive).
        groups: N group ids; rows of the query's group are never negatives.
        k: negatives kept per row.
        skip_top: best other-group candidates skipped before keeping any.
        max_score_ratio: drop candidates scoring >= this x the row's positive score.
        backend: "torch" (chunked exact scan), "faiss" (exact index) or "auto" (faiss when
            installed).

    Returns:
        (negatives N x k, -1 where fewer than k survived; stats).
    """
    query = F.normalize(query.detach().float().cpu(), dim=-1)
    gallery = F.normalize(gallery.detach().float().cpu(), dim=-1)
    groups_t = torch.as_tensor(np.asarray(groups), dtype=torch.long)
    n = len(query)
    if gallery.shape != query.shape or len(groups_t) != n:
        raise ValueError(
            f"query {tuple(query.shape)}, gallery {tuple(gallery.shape)} and {len(groups_t)} "
            "group ids must describe the same rows"
        )
    others = n - int(torch.unique(groups_t, return_counts=True)[1].max())
    m = min(skip_top + CANDIDATE_FACTOR * k, others)
    negatives = np.full((n, k), -1, dtype=np.int64)
    if m <= skip_top or n == 0:
        return negatives, MiningStats(n, 0.0, 0.0, 0.0, 0.0)
    if backend == "auto":
        backend = "faiss" if _has_faiss() else "torch"
    if backend == "faiss":
        scores, index = _candidates_faiss(query, gallery, groups_t, m)
    else:
        scores, index = _candidates_torch(query, gallery, groups_t, m, chunk_rows)
    scores, index = scores[:, skip_top:], index[:, skip_top:]
    positive = (query * gallery).sum(-1, keepdim=True)  # N x 1, row i's own pair
    raw = torch.isfinite(scores)
    keep = raw & (scores < max_score_ratio * positive)
    # What plain top-k mining (no guard) would have taken: the first k raw candidates.
    top_k = raw & (torch.arange(scores.shape[1]) < k)
    # First k kept candidates per row, in score order.
    rank = keep.long().cumsum(1)
    keep &= rank <= k
    gaps = []
    for i in range(n):
        chosen = index[i][keep[i]]
        negatives[i, : len(chosen)] = chosen.numpy()
        gaps.append(positive[i] - scores[i][keep[i]])
    gap = torch.cat(gaps)
    top_count = max(int(top_k.sum()), 1)
    stats = MiningStats(
        queries=n,
        mean_kept=float(keep.sum()) / n,
        score_gap=float(gap.mean()) if len(gap) else 0.0,
        above_positive=float((top_k & (scores > positive)).sum()) / top_count,
        dropped_by_guard=float((top_k & (scores >= max_score_ratio * positive)).sum()) / top_count,
    )
    return negatives, stats


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class HardNegativeMiner:
    """Holds the current negatives of the train split and re-mines them on schedule.

    Args:
        embed: tower name -> N x E embeddings of every train row, in row order, under the
            model as it is at the call (the app layer supplies it).
        query_tower, gallery_tower: which side asks and which side is ranked.
        groups: N group ids of the train rows.
        k, skip_top, max_score_ratio: see `mine_hard_negatives`.
        every_epochs: re-mine at the start of every N-th epoch (None: mine once).
    """

    def __init__(
        self,
        embed: Callable[[str], Tensor],
        query_tower: str,
        gallery_tower: str,
        groups: np.ndarray,
        *,
        k: int,
        skip_top: int,
        max_score_ratio: float,
        every_epochs: int | None = None,
    ) -> None:
        self.embed = embed
        self.towers = (query_tower, gallery_tower)
        self.groups = np.asarray(groups)
        self.k, self.skip_top, self.max_score_ratio = k, skip_top, max_score_ratio
        self.every_epochs = every_epochs
        self.negatives: np.ndarray | None = None
        self.mined_at: int | None = None
        self.history: list[tuple[int, MiningStats]] = []

    def mine(self, epoch: int) -> np.ndarray:
        """Embed both towers with the model as it is now and mine every row's negatives."""
        query, gallery = (self.embed(t) for t in self.towers)
        self.negatives, stats = mine_hard_negatives(
            query,
            gallery,
            self.groups,
            k=self.k,
            skip_top=self.skip_top,
            max_score_ratio=self.max_score_ratio,
        )
        self.mined_at = epoch
        self.history.append((epoch, stats))
        return self.negatives

    def negatives_for(self, epoch: int) -> np.ndarray:
        """The negatives to sample epoch `epoch` with (mining when due)."""
        due = self.negatives is None or (
            self.every_epochs is not None
            and epoch != self.mined_at
            and epoch % self.every_epochs == 0
        )
        return self.mine(epoch) if due else self.negatives  # type: ignore[return-value]
