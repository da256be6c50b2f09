"""Multi-positive retrieval metrics in both directions from one chunked pass over a·bᵀ.

A query's positives are all gallery items of its match group. Every similarity is
computed exactly once and positive scores are read from that same output (a separately
computed dot product can differ in the last bit and silently shift ranks).

How one pass serves both directions: rows of `a` and `b` are sorted by group and the row
chunks end on group boundaries, so the "diagonal" block of a chunk (its rows × the
columns of the same groups) holds every positive of its rows *and* of its columns.
Pass 1 computes the diagonal blocks: it reads the positive scores (the per-row and
per-column thresholds) and counts the negatives inside the block. Pass 2 computes the
remaining off-diagonal tiles, which hold only negatives, and adds, per row and per
column, how many scores reach each threshold: a few vectorised comparisons per tile, no
sort of full rows, and the Na×Nb matrix is never held whole.

Ranks are 1-based. Ties are pessimistic: a negative whose score equals a positive's is
ranked ahead of it. Positives tied with each other take consecutive ranks (their order
among themselves does not change any metric). Queries whose group has no gallery item
are left out (`num_queries` says how many were scored).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import DataError

ScoreFn = Callable[[int, int, int, int], Tensor]  # (r0, r1, c0, c1) -> scores[r0:r1, c0:c1]

# Off-diagonal tile: 4 MiB of float32, small enough that the comparisons after the matmul
# read it from cache; measured faster than 16 MiB tiles at N = 5k and equal at N = 50k.
TILE_ELEMENTS = 1 << 20


@dataclass
class PositiveRanks:
    """Ranks of every positive of every query, sorted ascending.

    Attributes:
        ranks: Q x R int64, 1-based ranks of the query's positives, ascending; 0 = padding.
        num_positives: Q int64, positives per query (0 = the query is not scored).
    """

    ranks: Tensor
    num_positives: Tensor


def _dense_groups(
    groups_a: Sequence | Tensor, groups_b: Sequence | Tensor
) -> tuple[Tensor, Tensor]:
    """Map arbitrary group labels (ints or strings) of both sides to one dense int64 space."""
    ga = groups_a.cpu().numpy() if isinstance(groups_a, Tensor) else np.asarray(groups_a)
    gb = groups_b.cpu().numpy() if isinstance(groups_b, Tensor) else np.asarray(groups_b)
    _, inverse_np = np.unique(np.concatenate([ga, gb]), return_inverse=True)
    inverse = torch.from_numpy(inverse_np.astype(np.int64).reshape(-1))
    return inverse[: len(ga)], inverse[len(ga) :]


def _sorted_groups(
    groups_a: Sequence | Tensor, groups_b: Sequence | Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Dense group ids of both sides sorted ascending (stable), with the permutations that
    sort them: the row / column order `positive_ranks` expects."""
    ga, gb = _dense_groups(groups_a, groups_b)
    ga_s, pa = torch.sort(ga, stable=True)
    gb_s, pb = torch.sort(gb, stable=True)
    return ga_s, pa, gb_s, pb


def _chunk_bounds(groups_sorted: Tensor, chunk_size: int) -> list[tuple[int, int]]:
    """Row chunks of about `chunk_size` rows that end on group boundaries."""
    n = len(groups_sorted)
    bounds, start = [], 0
    while start < n:
        end = min(start + chunk_size, n)
        if end < n:  # extend to the end of the group that straddles `end`
            end = int(torch.searchsorted(groups_sorted, groups_sorted[end - 1], right=True))
        bounds.append((start, end))
        start = end
    return bounds


# With this many thresholds per query (positives), `_count_ge` first keeps the scores that
# reach the query's weakest positive and compares only those; below it, K dense passes.
SPARSE_MIN_THRESHOLDS = 3
# ... as long as at most this share of the tile survives the first comparison.
SPARSE_MAX_SHARE = 0.05


def _count_ge_dense(tile: Tensor, thresholds: Tensor, dim: int, out: Tensor) -> None:
    buf = torch.empty(tile.shape, dtype=torch.float32, device=tile.device)
    for k in range(thresholds.shape[0]):
        torch.ge(tile, thresholds[k].unsqueeze(dim), out=buf)
        out[k] += buf.sum(dim).to(torch.int32)


def _count_ge(tile: Tensor, thresholds: Tensor, dim: int, out: Tensor) -> None:
    """out[k] += number of entries of `tile` along `dim` that reach thresholds[k].

    Dense path: each comparison is written into a float32 buffer and summed as floats —
    several times faster than a bool tensor on CPU, and exact (0/1 sums stay far below
    2**24). With many thresholds per query (a query with 5 positives) only the scores
    that reach the query's weakest positive can count at all, and they are usually few:
    those are found in one pass and compared against all K thresholds; when more than
    `SPARSE_MAX_SHARE` of the tile survives, the dense path is used instead. Both paths
    make the same comparisons on the same values, so they agree exactly.

    Shape:
        tile: C x W; thresholds: K x C (dim=1) or K x W (dim=0); out: K x C or K x W.
    """
    if thresholds.shape[0] < SPARSE_MIN_THRESHOLDS:
        _count_ge_dense(tile, thresholds, dim, out)
        return
    weakest = thresholds.amin(0)  # +inf padding (fewer than K positives) never wins
    hits = (tile >= weakest.unsqueeze(dim)).nonzero()
    if len(hits) > SPARSE_MAX_SHARE * tile.numel():
        _count_ge_dense(tile, thresholds, dim, out)
        return
    values = tile[hits[:, 0], hits[:, 1]]
    owner = hits[:, 1 - dim]  # the row (dim=1) or column (dim=0) each score belongs to
    reached = values.unsqueeze(0) >= thresholds[:, owner]  # K x hits
    out.index_add_(1, owner, reached.to(torch.int32))


def _positive_scores(
    block: Tensor, groups: Tensor, starts: Tensor, counts: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """Positive scores of each row of `block`, best first, and how many reach each one.

    Row i's positives are columns starts[g_i] .. starts[g_i] + counts[g_i] - 1 of `block`.

    Returns:
        thresholds K x C (+inf where a row has fewer than K positives) and, K x C int32,
        the number of the row's positives whose score reaches each threshold.
    """
    offsets = torch.arange(k, device=block.device)
    cols = starts[groups].unsqueeze(1) + offsets
    valid = offsets < counts[groups].unsqueeze(1)
    scores = block.gather(1, cols.clamp(0, block.shape[1] - 1))
    scores = scores.masked_fill(~valid, -math.inf).sort(dim=1, descending=True).values
    # Positives reaching the k-th best one's score: k + 1 plus any later ties; found by a
    # batched binary search on the ascending negated scores (O(C·K) memory).
    negated = -scores  # ascending; the padding (-inf) becomes +inf at the end
    reached = torch.searchsorted(negated, negated, right=True).masked_fill(~valid, 0)
    thresholds = scores.masked_fill(~valid, math.inf)
    return thresholds.T.contiguous(), reached.to(torch.int32).T


def _ranks_from_counts(neg_ge: Tensor, num_pos: Tensor) -> Tensor:
    """k-th best positive (1-based k) is ranked after the negatives reaching its score."""
    k = torch.arange(1, neg_ge.shape[1] + 1, dtype=torch.int64)
    ranks = neg_ge.to(torch.int64) + k
    return ranks.masked_fill(k > num_pos.unsqueeze(1), 0)


def positive_ranks(
    score_fn: ScoreFn,
    ga: Tensor,
    gb: Tensor,
    *,
    chunk_size: int = 1024,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[PositiveRanks, PositiveRanks]:
    """Ranks of all positives, a→b (per row) and b→a (per column), from one pass.

    Args:
        score_fn: returns the score block for rows r0:r1 and columns c0:c1; rows and
            columns must already be sorted by group (`ga`, `gb` ascending).
        ga, gb: dense int64 group ids of rows / columns, sorted ascending.
        chunk_size: rows per chunk (bounds peak memory to about chunk_size × Nb floats
            in the worst case of one huge group, else chunk_size × tile width).
        dtype, device: of the score blocks (thresholds are kept in the same dtype, so a
            comparison with a positive's own score is exact).
    """
    na, nb = len(ga), len(gb)
    counts_b = torch.bincount(gb, minlength=int(max(ga.max(), gb.max())) + 1)
    counts_a = torch.bincount(ga, minlength=len(counts_b))
    npos_a, npos_b = counts_b[ga], counts_a[gb]  # positives per row / per column
    ra, rb = int(npos_a.max()), int(npos_b.max())
    row_thr = torch.full((ra, na), math.inf, dtype=dtype, device=device)
    col_thr = torch.full((rb, nb), math.inf, dtype=dtype, device=device)
    row_neg = torch.zeros(ra, na, dtype=torch.int32, device=device)
    col_neg = torch.zeros(rb, nb, dtype=torch.int32, device=device)
    ga_d, gb_d = ga.to(device), gb.to(device)
    chunks = _chunk_bounds(ga, chunk_size)
    diag: list[tuple[int, int]] = []

    # Pass 1: diagonal blocks -> positive scores (thresholds) + negatives inside the block.
    # Sorted by group, the positives of a row are a contiguous run of columns (and vice
    # versa), so they are gathered by index instead of masking the whole block.
    starts_b = torch.searchsorted(gb, torch.arange(len(counts_b))).to(device)
    starts_a = torch.searchsorted(ga, torch.arange(len(counts_a))).to(device)
    counts_a_d, counts_b_d = counts_a.to(device), counts_b.to(device)
    for r0, r1 in chunks:
        c0 = int(torch.searchsorted(gb, ga[r0]))
        c1 = int(torch.searchsorted(gb, ga[r1 - 1], right=True))
        diag.append((c0, c1))
        if c1 == c0:
            continue
        block = score_fn(r0, r1, c0, c1)
        k_r, k_c = int(npos_a[r0:r1].max()), int(npos_b[c0:c1].max())
        t_r, pos_r = _positive_scores(block, ga_d[r0:r1], starts_b - c0, counts_b_d, k_r)
        t_c, pos_c = _positive_scores(block.T, gb_d[c0:c1], starts_a - r0, counts_a_d, k_c)
        row_thr[:k_r, r0:r1], col_thr[:k_c, c0:c1] = t_r, t_c
        row_neg[:k_r, r0:r1] -= pos_r  # the block's positives are not negatives
        col_neg[:k_c, c0:c1] -= pos_c
        _count_ge(block, t_r, 1, row_neg[:k_r, r0:r1])
        _count_ge(block, t_c, 0, col_neg[:k_c, c0:c1])

    # Pass 2: off-diagonal tiles, negatives only.
    for (r0, r1), (d0, d1) in zip(chunks, diag, strict=True):
        width = max(64, TILE_ELEMENTS // (r1 - r0))
        k_r = int(npos_a[r0:r1].max())
        for s0, s1 in ((0, d0), (d1, nb)):
            for c0 in range(s0, s1, width):
                c1 = min(c0 + width, s1)
                tile = score_fn(r0, r1, c0, c1)
                _count_ge(tile, row_thr[:k_r, r0:r1], 1, row_neg[:k_r, r0:r1])
                k_c = int(npos_b[c0:c1].max())
                _count_ge(tile, col_thr[:k_c, c0:c1], 0, col_neg[:k_c, c0:c1])

    return (
        PositiveRanks(_ranks_from_counts(row_neg.T.cpu(), npos_a), npos_a),
        PositiveRanks(_ranks_from_counts(col_neg.T.cpu(), npos_b), npos_b),
    )


def summarise_ranks(pr: PositiveRanks, ks: Sequence[int] = (1, 5, 10, 50)) -> dict[str, float]:
    """Recall@k, median/mean rank of the first positive, NDCG@5/10, mAP and mAP@R.

    mAP@R follows Musgrave et al. 2020 ("A Metric Learning Reality Check"): precision at
    each positive within the top R, R = the query's number of positives, divided by R.
    NDCG uses binary relevance and the log2(rank + 1) discount.
    """
    keep = pr.num_positives > 0
    ranks, n_pos = pr.ranks[keep].double(), pr.num_positives[keep].double()
    if len(ranks) == 0:
        raise DataError("retrieval: no query has a positive in the gallery (check the group ids)")
    valid = ranks > 0
    k = torch.arange(1, ranks.shape[1] + 1, dtype=torch.float64).expand_as(ranks)
    first = ranks[:, 0]
    precision = torch.where(valid, k / ranks.clamp(min=1), 0.0)
    out: dict[str, float] = {f"R@{kk}": (first <= kk).double().mean().item() for kk in ks}
    out["median_rank"] = float(np.median(first.numpy()))  # mean of the middle two if even
    out["mean_rank"] = first.mean().item()
    gain = torch.where(valid, 1.0 / torch.log2(ranks + 1.0), 0.0)
    for cut in (5, 10):
        ideal_n = n_pos.clamp(max=cut)
        discounts = 1.0 / torch.log2(torch.arange(2, cut + 2, dtype=torch.float64))
        idcg = (discounts.unsqueeze(0) * (torch.arange(cut) < ideal_n.unsqueeze(1))).sum(1)
        dcg = (gain * (ranks <= cut)).sum(1)
        out[f"NDCG@{cut}"] = (dcg / idcg).mean().item()
    out["mAP"] = (precision.sum(1) / n_pos).mean().item()
    in_r = ranks <= n_pos.unsqueeze(1)
    out["mAP@R"] = ((precision * in_r).sum(1) / n_pos).mean().item()
    out["num_queries"] = float(len(ranks))
    return out


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


def self_retrieval_metrics(
    x: Tensor,
    groups: Sequence | Tensor,
    *,
    labels: Tensor | None = None,
    ks: Sequence[int] = (1, 5, 10, 50),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Leave-one-out retrieval within one set (e.g. chart -> chart): every item queries
    all *other* items; positives are the other members of its group.

    A query never retrieves itself, so a group of one is not scored. Ties are pessimistic
    as in `retrieval_metrics`. Cost: one N x N matmul in row chunks plus, per chunk, a
    comparison of each negative with each positive (memory chunk x R x N, R = largest
    group), so keep groups small (use `class_R@1` for class-sized groups).

    Returns:
        the keys of `summarise_ranks`, plus `class_R@1` (nearest other item has the same
        label) when `labels` are given.
    """
    n = len(x)
    if x.ndim != 2 or n < 2 or len(groups) != n:
        raise DataError(
            f"self-retrieval needs N >= 2 embeddings with one group each, got {tuple(x.shape)}"
        )
    g, _ = _dense_groups(groups, groups)
    x = x.detach()
    r_max = int(torch.bincount(g).max()) - 1
    ranks = torch.zeros(n, max(r_max, 1), dtype=torch.long)
    num_pos = torch.zeros(n, dtype=torch.long)
    class_hits = []
    step = max(1, min(chunk_size, (1 << 24) // max(1, r_max * n)))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        s = x[r0:r1] @ x.T
        rows = torch.arange(r1 - r0)
        s[rows, rows + r0] = float("-inf")  # the query itself is never a candidate
        pos = g[r0:r1, None] == g[None, :]
        pos[rows, rows + r0] = False
        if labels is not None:
            class_hits.append(labels[r0:r1] == labels[s.argmax(1)])
        p_scores = torch.where(pos, s, float("-inf")).sort(1, descending=True).values[:, :r_max]
        neg = torch.where(pos, float("-inf"), s)  # self is already -inf in s
        neg_ge = (neg[:, None, :] >= p_scores[:, :, None]).sum(-1)  # chunk x R
        k = torch.arange(r_max).expand_as(neg_ge)
        counts = pos.sum(1)
        valid = k < counts[:, None]
        ranks[r0:r1, :r_max] = torch.where(valid, 1 + k + neg_ge, 0)
        num_pos[r0:r1] = counts
    out = summarise_ranks(PositiveRanks(ranks, num_pos), ks)
    if labels is not None:
        hits = torch.cat(class_hits)
        known = labels >= 0
        out["class_R@1"] = hits[known].double().mean().item() if bool(known.any()) else float("nan")
    return out
