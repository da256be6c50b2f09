"""Optional FAISS backend for top-k search (exact IndexFlatIP, CPU).

FAISS is imported only when used, so contrastkit works without it; results match
`contrastkit.eval.search.topk_search` up to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import ConfigError


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "the FAISS search backend needs the faiss package: pip install faiss-cpu "
            "(or use the exact chunked search, which needs nothing extra)"
        ) from None
    return faiss


class FaissIndex:
    """Exact inner-product index over a gallery (cosine for normalised embeddings)."""

    def __init__(self, gallery: Tensor) -> None:
        faiss = _faiss()
        data = np.ascontiguousarray(gallery.detach().cpu().float().numpy())
        self.index = faiss.IndexFlatIP(data.shape[1])
        self.index.add(data)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(scores Q x k, indices Q x k) like `topk_search`."""
        k = min(k, len(self))
        data = np.ascontiguousarray(query.detach().cpu().float().numpy())
        scores, indices = self.index.search(data, k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()


def faiss_topk_search(query: Tensor, gallery: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """One-shot FAISS search (builds a flat index over `gallery`)."""
    return FaissIndex(gallery).search(query, k)
