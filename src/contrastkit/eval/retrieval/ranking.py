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
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.eval.retrieval.match_groups import _chunk_bounds
from contrastkit.eval.retrieval.threshold_counts import TILE_ELEMENTS, _count_ge

ScoreFn = Callable[[int, int, int, int], Tensor]  # (r0, r1, c0, c1) -> scores[r0:r1, c0:c1]


@dataclass
class PositiveRanks:
    """Ranks of every positive of every query, sorted ascending.

    Attributes:
        ranks: Q x R int64, 1-based ranks of the query's positives, ascending; 0 = padding.
        num_positives: Q int64, positives per query (0 = the query is not scored).
    """

    ranks: Tensor
    num_positives: Tensor


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
