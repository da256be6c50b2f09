"""Retrieval metrics reduced from the ranks of each query's positives.

R@k, median/mean rank of the first positive, NDCG@5/10, mAP and mAP@R, averaged over the
queries that have at least one positive (`num_queries`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from contrastkit.errors import DataError
from contrastkit.eval.retrieval.ranking import PositiveRanks


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
