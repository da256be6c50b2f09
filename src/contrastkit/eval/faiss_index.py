"""Optional FAISS backends for top-k search: exact (IndexFlatIP) and approximate (IVF).

FAISS is imported only when used, so contrastkit works without it. `FaissIndex` is exact
and matches `contrastkit.eval.search.topk_search` up to float rounding. `IvfIndex` is
approximate (Jégou et al. 2011, an inverted file over k-means cells): a query is compared
only with the gallery items of its `nprobe` nearest cells, so a search costs about
nprobe / nlist of the exact one and may miss an item whose cell was not probed. That is
what `eval.index: faiss` selects for `contrastkit search` (the metrics stay exact:
`retrieval.py`, `gallery.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import ConfigError

# FAISS's guideline for an IVF index: about 4 * sqrt(N) cells, trained on at least 39
# points per cell (below that k-means warns and the cells are poor). Smaller galleries
# get the exact flat index: IVF would save nothing there.
CELLS_PER_SQRT_N = 4
MIN_POINTS_PER_CELL = 39
# Cells probed per query: 1/16 of them, about 1/16 of the exact search's work; measured
# recall@10 of 0.89 against the exact top 10 at N = 1M (bench/retrieval_1m.py, a hard
# case: half the neighbours are distractors spread around 1000 centres).
PROBE_FRACTION = 1 / 16
# k-means iterations for the cells (FAISS's default is 25): the cells only need to be
# coarse, and training is most of an IVF build at 1M rows.
KMEANS_ITERATIONS = 10


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "the FAISS search backend needs the faiss package: pip install faiss-cpu "
            "(or use the exact chunked search, which needs nothing extra)"
        ) from None
    return faiss


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().float().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class FaissIndex:
    """Exact inner-product index over a gallery (cosine for normalised embeddings)."""

    def __init__(self, gallery: Tensor | np.ndarray) -> None:
        faiss = _faiss()
        data = _numpy(gallery)
        self.index = faiss.IndexFlatIP(data.shape[1])
        self.index.add(data)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, query: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """(scores Q x k, indices Q x k) like `topk_search`."""
        k = min(k, len(self))
        scores, indices = self.index.search(_numpy(query), k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()


class IvfIndex(FaissIndex):
    """Approximate inner-product index: IVF-Flat with `nlist` cells, `nprobe` probed.

    Args:
        gallery: N x D embeddings (added in blocks, so an N x D memmap is fine).
        nlist, nprobe: default 4 sqrt(N) cells and 1/16 of them probed.
        train_size: gallery rows (evenly spaced) the k-means is trained on.
    """

    def __init__(
        self,
        gallery: Tensor | np.ndarray,
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        train_size: int = 100_000,
        seed: int = 0,
    ) -> None:
        faiss = _faiss()
        n, d = gallery.shape
        self.nlist = nlist or max(1, int(CELLS_PER_SQRT_N * math.sqrt(n)))
        self.quantizer = faiss.IndexFlatIP(d)
        self.index = faiss.IndexIVFFlat(self.quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.cp.niter = KMEANS_ITERATIONS
        step = max(1, n // max(train_size, self.nlist * MIN_POINTS_PER_CELL))
        self.index.train(_numpy(gallery[::step]))
        for start in range(0, n, 65536):
            self.index.add(_numpy(gallery[start : start + 65536]))
        self.index.nprobe = nprobe or max(1, int(self.nlist * PROBE_FRACTION))


def build_searcher(
    index: str, gallery: Tensor | np.ndarray
) -> Callable[[Tensor, int], tuple[Tensor, Tensor]]:
    """`(query, k) -> (scores, indices)` for `eval.index`: `exact` (chunked matmul, no
    extra package) or `faiss` (IVF when the gallery is large enough, else flat)."""
    if index == "exact":
        from contrastkit.eval.search import topk_search

        data = gallery if isinstance(gallery, Tensor) else torch.from_numpy(_numpy(gallery))
        return lambda query, k: topk_search(query, data, k)
    if index != "faiss":
        raise ConfigError(f"eval.index must be exact or faiss, got {index!r}")
    n = len(gallery)
    cells = max(1, int(CELLS_PER_SQRT_N * math.sqrt(n)))
    built = IvfIndex(gallery) if n >= cells * MIN_POINTS_PER_CELL else FaissIndex(gallery)
    return built.search


def faiss_topk_search(query: Tensor, gallery: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """One-shot exact FAISS search (builds a flat index over `gallery`)."""
    return FaissIndex(gallery).search(query, k)
