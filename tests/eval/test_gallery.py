"""Streamed gallery retrieval equals the in-memory metrics exactly (query -> gallery)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from contrastkit.errors import DataError
from contrastkit.eval.retrieval import retrieval_metrics
from contrastkit.eval.retrieval.gallery import NpyRows, gallery_retrieval_metrics


def _case(seed: int = 0):
    """200 queries in 150 groups (some with 2 queries), 1-3 positives each in a gallery of
    3000 rows (most of them distractors of other groups), rows in a shuffled order."""
    g = torch.Generator().manual_seed(seed)
    gq = torch.randint(0, 150, (200,), generator=g)
    positives = torch.repeat_interleave(torch.arange(150), torch.randint(1, 4, (150,), generator=g))
    gg = torch.cat([positives, torch.arange(1000, 1000 + 3000 - len(positives))])
    gg = gg[torch.randperm(len(gg), generator=g)]
    anchors = torch.nn.functional.normalize(torch.randn(4000, 32, generator=g), dim=1)
    noise = lambda n: 0.9 * torch.randn(n, 32, generator=g)  # noqa: E731
    q = torch.nn.functional.normalize(anchors[gq] + noise(len(gq)), dim=1)
    b = torch.nn.functional.normalize(anchors[gg] + noise(len(gg)), dim=1)
    return q, b, gq, gg


@pytest.mark.parametrize("chunk,block", [(1024, 16384), (64, 500)])
def test_streamed_from_npy_equals_in_memory(tmp_path, chunk, block) -> None:
    q, b, gq, gg = _case()
    np.save(tmp_path / "gallery.npy", b.numpy())
    want = retrieval_metrics(q, b, gq, gg)["a_to_b"]
    got = gallery_retrieval_metrics(
        q, tmp_path / "gallery.npy", gq, gg.numpy(), chunk_size=chunk, block_rows=block
    )
    assert got == want
    assert want["R@1"] not in (0.0, 1.0) and want["num_queries"] == 200


def test_ties_are_pessimistic_like_the_in_memory_metrics() -> None:
    # Query 0's positive (gallery 0) ties with one negative (gallery 1): rank 2, as in
    # retrieval_metrics; query 1's two positives tie with each other: ranks 1 and 2.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.6, 0.8]])
    gq, gg = [0, 1], [0, 5, 1, 1, 6]
    got = gallery_retrieval_metrics(q, b, gq, gg, block_rows=2, chunk_size=1)
    assert got == retrieval_metrics(q, b, gq, gg)["a_to_b"]
    assert got["R@1"] == 0.5 and got["mean_rank"] == 1.5


def test_bad_gallery_files(tmp_path) -> None:
    np.save(tmp_path / "three.npy", np.zeros((2, 3, 4), dtype=np.float32))
    with pytest.raises(DataError, match="N x D"):
        NpyRows(tmp_path / "three.npy")
    (tmp_path / "junk.npy").write_bytes(b"nope")
    with pytest.raises(DataError, match="junk.npy"):
        NpyRows(tmp_path / "junk.npy")
    with pytest.raises(DataError, match="no query has a positive"):
        gallery_retrieval_metrics(torch.ones(1, 2), torch.ones(3, 2), [9], [0, 1, 2])
