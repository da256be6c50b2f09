"""Exact top-k search over a large gallery, chunked so memory stays bounded."""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.errors import DataError


def topk_search(
    query: Tensor, gallery: Tensor, k: int, chunk_size: int = 4096
) -> tuple[Tensor, Tensor]:
    """Inner-product top-k for each query (cosine when both sides are L2-normalised).

    Query rows and gallery rows are both processed in chunks of `chunk_size`; the running
    top-k is merged chunk by chunk, so at most chunk_size × chunk_size scores exist at
    once. Ties keep the lower gallery index first.

    Shape:
        query: Q x D, gallery: N x D -> scores Q x k (descending), indices Q x k (int64).
    """
    if query.ndim != 2 or gallery.ndim != 2 or query.shape[1] != gallery.shape[1]:
        raise DataError(
            f"search: query and gallery must be Q x D and N x D, got {tuple(query.shape)} "
            f"and {tuple(gallery.shape)}"
        )
    k = min(k, len(gallery))
    if k < 1:
        raise DataError("search: k must be >= 1 and the gallery non-empty")
    out_s, out_i = [], []
    for r0 in range(0, len(query), chunk_size):
        q = query[r0 : r0 + chunk_size]
        best_s = torch.full((len(q), 0), float("-inf"), dtype=q.dtype, device=q.device)
        best_i = torch.zeros((len(q), 0), dtype=torch.long, device=q.device)
        for c0 in range(0, len(gallery), chunk_size):
            s = q @ gallery[c0 : c0 + chunk_size].T
            idx = torch.arange(c0, c0 + s.shape[1], device=q.device).expand_as(s)
            # Earlier (lower-index) candidates come first, and stable sort keeps them first.
            cand_s, cand_i = torch.cat([best_s, s], 1), torch.cat([best_i, idx], 1)
            order = torch.sort(cand_s, dim=1, descending=True, stable=True).indices[:, :k]
            best_s, best_i = cand_s.gather(1, order), cand_i.gather(1, order)
        out_s.append(best_s)
        out_i.append(best_i)
    return torch.cat(out_s), torch.cat(out_i)
