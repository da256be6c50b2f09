"""Leave-one-out retrieval within one set: every item queries all the *other* items.

The query is masked out of its own gallery, so a group of one has no positive and is not
scored; ties stay pessimistic as in `positive_ranks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit.errors import DataError
from contrastkit.eval.retrieval.match_groups import _dense_groups
from contrastkit.eval.retrieval.rank_metrics import summarise_ranks
from contrastkit.eval.retrieval.ranking import PositiveRanks


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
