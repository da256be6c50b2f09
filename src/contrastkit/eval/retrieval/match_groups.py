"""Match groups: labels of both sides in one dense id space, sorted, chunked on group edges.

A query's positives are the gallery items of its match group. Sorting both sides by group
makes every group a contiguous run of rows and of columns, which is what lets
`positive_ranks` find all positives of a row chunk in one "diagonal" block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


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
