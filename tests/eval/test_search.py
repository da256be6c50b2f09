import pytest
import torch

from contrastkit.errors import ConfigError, DataError
from contrastkit.eval.export import export_embeddings, load_embeddings
from contrastkit.eval.search import topk_search


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1
    )


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 100])
def test_chunked_topk_equals_full_sort(chunk_size):
    q, g = unit(9, 5, 0), unit(23, 5, 1)
    scores, idx = topk_search(q, g, k=4, chunk_size=chunk_size)
    full = q @ g.T
    want_s, want_i = full.sort(dim=1, descending=True)
    assert torch.equal(idx, want_i[:, :4])
    torch.testing.assert_close(scores, want_s[:, :4])


def test_ties_keep_lower_index_and_k_is_capped():
    g = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    scores, idx = topk_search(torch.tensor([[1.0, 0.0]]), g, k=10, chunk_size=1)
    assert idx.tolist() == [[0, 1, 2]] and scores.shape == (1, 3)
    with pytest.raises(DataError):
        topk_search(torch.ones(1, 2), torch.ones(3, 4), k=1)


def test_faiss_equals_exact():
    pytest.importorskip("faiss")
    from contrastkit.eval.faiss_index import FaissIndex, faiss_topk_search

    q, g = unit(20, 16, 2), unit(200, 16, 3)
    scores, idx = faiss_topk_search(q, g, k=5)
    want_s, want_i = topk_search(q, g, k=5, chunk_size=64)
    assert torch.equal(idx, want_i)
    torch.testing.assert_close(scores, want_s, atol=1e-5, rtol=0)
    assert len(FaissIndex(g)) == 200


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_export_round_trip(tmp_path, suffix):
    ids, emb = ["a", "b/c", "d e"], unit(3, 4, 4)
    path = export_embeddings(tmp_path / f"sub/emb{suffix}", ids, emb)
    if suffix == ".npy":
        assert (tmp_path / "sub/emb.ids.txt").is_file()
    got_ids, got = load_embeddings(path)
    assert got_ids == ids and torch.equal(got, emb)


def test_export_errors(tmp_path):
    with pytest.raises(ConfigError, match="suffix"):
        export_embeddings(tmp_path / "x.csv", ["a"], torch.zeros(1, 2))
    with pytest.raises(DataError, match="2 ids for 1"):
        export_embeddings(tmp_path / "x.npy", ["a", "b"], torch.zeros(1, 2))
    with pytest.raises(DataError, match="does not exist"):
        load_embeddings(tmp_path / "missing.npy")
