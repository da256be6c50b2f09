"""`eval.index`: exact search, FAISS flat (exact) and FAISS IVF (approximate)."""

from __future__ import annotations

import pytest
import torch

from contrastkit.eval.search import topk_search

faiss = pytest.importorskip("faiss")

from contrastkit.eval.faiss_index import IvfIndex, build_searcher  # noqa: E402


def _clustered(n: int, d: int = 16, centres: int = 50, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centres, d, generator=g)
    x = c[torch.randint(0, centres, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)
    return torch.nn.functional.normalize(x, dim=1)


def test_exact_and_small_faiss_gallery_give_the_exact_top_k() -> None:
    gallery, query = _clustered(2000), _clustered(20, seed=1)
    want_s, want_i = topk_search(query, gallery, 5)
    for index in ("exact", "faiss"):  # 2000 rows: too few for IVF, so a flat index
        scores, idx = build_searcher(index, gallery)(query, 5)
        assert torch.equal(idx, want_i), index
        torch.testing.assert_close(scores, want_s, rtol=0, atol=1e-5)


def test_ivf_is_exact_when_probing_every_cell_and_approximate_otherwise() -> None:
    gallery, query = _clustered(20_000), _clustered(200, seed=1)
    _, want = topk_search(query, gallery, 10)

    def recall(index: IvfIndex) -> float:
        _, got = index.search(query, 10)
        hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(got, want, strict=True))
        return hits / want.numel()

    assert recall(IvfIndex(gallery, nlist=64, nprobe=64)) == 1.0
    assert recall(IvfIndex(gallery, nlist=64, nprobe=1)) < 1.0


def test_large_gallery_gets_ivf_and_unknown_index_is_an_error() -> None:
    from contrastkit.config import EvalConfig
    from contrastkit.errors import ConfigError

    search = build_searcher("faiss", _clustered(30_000))  # 4 sqrt(N) = 692 cells x 39 <= N
    assert isinstance(search.__self__, IvfIndex) and search.__self__.nlist == 692
    with pytest.raises(ConfigError, match="exact or faiss"):
        build_searcher("annoy", _clustered(10))
    with pytest.raises(ValueError, match="index"):
        EvalConfig(index="annoy")
