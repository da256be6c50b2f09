"""Counting the scores of a tile that reach per-query thresholds (the positives' scores).

This count is most of the cost of ranking: a positive's rank is the number of negatives
scoring at least as high, plus its place among the positives. `positive_ranks` and the
streamed gallery both feed their tiles through `_count_ge`.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Off-diagonal tile: 4 MiB of float32, small enough that the comparisons after the matmul
# read it from cache; measured faster than 16 MiB tiles at N = 5k and equal at N = 50k.
TILE_ELEMENTS = 1 << 20


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
