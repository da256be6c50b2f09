import math
import random

import pytest
import torch

from contrastkit.errors import DataError
from contrastkit.eval.retrieval import (
    label_recall_at_1,
    retrieval_metrics,
    retrieval_metrics_from_scores,
)


def reference_metrics(scores: torch.Tensor, groups_a: list, groups_b: list, ks=(1, 5, 10, 50)):
    """Slow reference: sort each query's gallery by (score desc, negatives first), read
    positions of the positives, compute metrics with plain Python loops."""
    out = {}
    for name, s, gq, gg in (
        ("a_to_b", scores, groups_a, groups_b),
        ("b_to_a", scores.T, groups_b, groups_a),
    ):
        rows = []
        for i in range(s.shape[0]):
            items = sorted(
                ((-float(s[i, j]), gg[j] == gq[i]) for j in range(s.shape[1])),
                key=lambda t: (t[0], t[1]),  # a negative tied with a positive goes first
            )
            ranks = [r + 1 for r, t in enumerate(items) if t[1]]
            if ranks:
                rows.append(ranks)
        n = len(rows)
        m = {f"R@{k}": sum(r[0] <= k for r in rows) / n for k in ks}
        firsts = sorted(r[0] for r in rows)
        m["median_rank"] = (firsts[(n - 1) // 2] + firsts[n // 2]) / 2
        m["mean_rank"] = sum(firsts) / n
        for cut in (5, 10):
            total = 0.0
            for r in rows:
                dcg = sum(1 / math.log2(x + 1) for x in r if x <= cut)
                idcg = sum(1 / math.log2(x + 1) for x in range(1, min(len(r), cut) + 1))
                total += dcg / idcg
            m[f"NDCG@{cut}"] = total / n
        m["mAP"] = sum(sum((k + 1) / x for k, x in enumerate(r)) / len(r) for r in rows) / n
        m["mAP@R"] = (
            sum(sum((k + 1) / x for k, x in enumerate(r) if x <= len(r)) / len(r) for r in rows) / n
        )
        m["num_queries"] = float(n)
        out[name] = m
    return out


def assert_close(got: dict, want: dict) -> None:
    for direction, metrics in want.items():
        for key, value in metrics.items():
            assert got[direction][key] == pytest.approx(value, abs=1e-9), (direction, key)


def test_hand_made_multi_positive_with_ties():
    # Query 0 (group "x") has positives at columns 0 and 2; column 1 ties with column 0.
    scores = torch.tensor(
        [
            [0.5, 0.5, 0.2, 0.9],  # a0 in x: ranking 3 (0.9), then 1 ahead of 0 (tie), 2
            [0.1, 0.3, 0.0, 0.3],  # a1 in y: positives 1 and 3 tie at the top
        ],
        dtype=torch.float64,
    )
    got = retrieval_metrics_from_scores(scores, ["x", "y"], ["x", "y", "x", "y"])
    a2b = got["a_to_b"]
    # a0: positive ranks 3 (pessimistic tie) and 4; a1: ranks 1 and 2.
    assert a2b["R@1"] == 0.5 and a2b["R@5"] == 1.0
    assert a2b["mean_rank"] == 2.0 and a2b["median_rank"] == 2.0
    assert a2b["mAP"] == pytest.approx(((1 / 3 + 2 / 4) / 2 + 1.0) / 2)
    assert a2b["mAP@R"] == pytest.approx((0.0 + 1.0) / 2)
    ndcg_a0 = (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert a2b["NDCG@10"] == pytest.approx((ndcg_a0 + 1.0) / 2)
    b2a = got["b_to_a"]
    # columns: b0 (x): a0 0.5 vs a1 0.1 -> rank 1; b1 (y): a0 0.5 beats a1 0.3 -> rank 2;
    # b2 (x): rank 1; b3 (y): a0 0.9 beats a1 0.3 -> rank 2.
    assert b2a["R@1"] == 0.5 and b2a["mean_rank"] == 1.5 and b2a["mAP"] == pytest.approx(0.75)
    assert_close(got, reference_metrics(scores, ["x", "y"], ["x", "y", "x", "y"]))


def test_tie_with_negative_counts_against_query():
    scores = torch.tensor([[1.0, 1.0]])
    got = retrieval_metrics_from_scores(scores, [0], [0, 1])
    assert got["a_to_b"]["R@1"] == 0.0 and got["a_to_b"]["mean_rank"] == 2.0


def test_all_tied_positives_keep_full_precision():
    got = retrieval_metrics_from_scores(torch.ones(1, 3), [0], [0, 0, 0])
    assert got["a_to_b"]["mAP"] == 1.0 and got["a_to_b"]["NDCG@5"] == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_random_tied_cases(seed):
    rng = random.Random(seed)
    na, nb = rng.randint(2, 20), rng.randint(2, 20)
    ga = [rng.randint(0, 4) for _ in range(na)]
    gb = [rng.randint(0, 4) for _ in range(nb)]
    if not set(ga) & set(gb):
        ga[0] = gb[0]
    scores = torch.randint(0, 4, (na, nb), generator=torch.Generator().manual_seed(seed)).double()
    want = reference_metrics(scores, ga, gb)
    for chunk_size in (1, 2, 5, 64):
        assert_close(retrieval_metrics_from_scores(scores, ga, gb, chunk_size=chunk_size), want)


def test_embeddings_chunked_equals_unchunked_and_positives_read_from_matmul():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(60, 8, generator=g), dim=1)
    groups_a = torch.arange(60) // 5  # 5 captions per image
    b = torch.nn.functional.normalize(a[::5] + 0.5 * torch.randn(12, 8, generator=g), dim=1)
    groups_b = torch.arange(12)
    full = retrieval_metrics(a, b, groups_a, groups_b, chunk_size=10_000)
    for chunk_size in (1, 3, 7, 16):
        assert retrieval_metrics(a, b, groups_a, groups_b, chunk_size=chunk_size) == full
    assert_close(full, reference_metrics(a @ b.T, groups_a.tolist(), groups_b.tolist()))


def test_self_retrieval_identical_embeddings_rank_one():
    # Positive scores are read from the same matmul output as the negatives, so an item
    # compared with itself is never beaten by a last-bit difference.
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(50, 16, generator=g), dim=1)
    got = retrieval_metrics(a, a.clone(), torch.arange(50), torch.arange(50), chunk_size=8)
    assert got["a_to_b"]["R@1"] == 1.0 and got["b_to_a"]["mAP"] == 1.0


def test_queries_without_positive_are_left_out():
    got = retrieval_metrics_from_scores(torch.eye(3), [0, 1, 7], [0, 1, 2])
    assert got["a_to_b"]["num_queries"] == 2.0 and got["b_to_a"]["num_queries"] == 2.0
    with pytest.raises(DataError, match="no query has a positive"):
        retrieval_metrics_from_scores(torch.eye(2), [0, 1], [2, 3])


def test_bad_shapes_raise():
    with pytest.raises(DataError, match="Na x D"):
        retrieval_metrics(torch.zeros(3, 4), torch.zeros(3, 5), [0, 1, 2], [0, 1, 2])


def test_agrees_with_torchmetrics_on_random_scores():
    tm = pytest.importorskip("torchmetrics.retrieval")
    g = torch.Generator().manual_seed(3)
    na, nb = 30, 40
    ga, gb = torch.randint(0, 10, (na,), generator=g), torch.randint(0, 10, (nb,), generator=g)
    # torchmetrics 1.9 AP drops positives whose score is <= 0: keep scores positive.
    scores = torch.rand(na, nb, generator=g, dtype=torch.float64) + 0.1
    ours = retrieval_metrics_from_scores(scores, ga, gb, chunk_size=4)["a_to_b"]
    keep = (ga.unsqueeze(1) == gb.unsqueeze(0)).any(1)
    target = (ga.unsqueeze(1) == gb.unsqueeze(0))[keep]
    preds, idx = scores[keep], torch.arange(int(keep.sum())).unsqueeze(1).expand(-1, nb)
    args = (preds.flatten(), target.flatten())
    kw = {"indexes": idx.flatten()}
    # torchmetrics' RetrievalRecall is the share of positives found; "any positive in the
    # top k" (our R@k) is its RetrievalHitRate.
    assert tm.RetrievalHitRate(top_k=5)(*args, **kw).item() == pytest.approx(ours["R@5"], abs=1e-6)
    assert tm.RetrievalMAP()(*args, **kw).item() == pytest.approx(ours["mAP"], abs=1e-6)
    ndcg = tm.RetrievalNormalizedDCG(top_k=10)(*args, **kw).item()
    assert ndcg == pytest.approx(ours["NDCG@10"], abs=1e-6)


def test_label_recall_at_1():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels_q, labels_g = torch.tensor([0, 0, -1]), torch.tensor([0, 1])
    assert label_recall_at_1(q, g, labels_q, labels_g, chunk_size=1) == 0.5


def test_one_to_one_recall_matches_torchmetrics_recall():
    tm = pytest.importorskip("torchmetrics.retrieval")
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(20, 20, generator=g)
    ours = retrieval_metrics_from_scores(scores, torch.arange(20), torch.arange(20))
    idx = torch.arange(20).unsqueeze(1).expand(-1, 20).flatten()
    for scores_q, key in ((scores, "a_to_b"), (scores.T, "b_to_a")):
        recall = tm.RetrievalRecall(top_k=1)(
            scores_q.flatten(), torch.eye(20).bool().flatten(), indexes=idx
        )
        assert recall.item() == pytest.approx(ours[key]["R@1"])


def test_self_retrieval_leaves_the_query_out():
    from contrastkit.eval.retrieval.leave_one_out import self_retrieval_metrics

    # 2-D unit vectors at known angles; groups {0,1} and {2,3}, item 4 alone.
    angles = torch.tensor([0.0, 0.3, 0.1, 1.5, 3.0])
    x = torch.stack([angles.cos(), angles.sin()], 1)
    groups = [0, 0, 1, 1, 2]
    out = self_retrieval_metrics(x, groups, labels=torch.tensor([5, 5, 5, 6, 7]), ks=(1, 2))
    # Item 0: others by score are 2 (0.1), 1 (0.3) -> its positive (1) is at rank 2.
    # Item 1: 2 (0.2 away), then 0 (0.3) -> rank 2. Item 2: 0 (0.1), 1 (0.2), then 3 -> rank 3.
    # Item 3 (1.5): 1 (1.2), 2 (1.4) ... its positive 2 at rank 2. Item 4 has no positive.
    assert out["num_queries"] == 4
    assert out["R@1"] == 0.0
    assert out["R@2"] == pytest.approx(3 / 4)
    assert out["mean_rank"] == pytest.approx((2 + 2 + 3 + 2) / 4)
    # class_R@1 over labelled rows: nearest other of 0 is 2 (5=5), of 1 is 2 (5=5),
    # of 2 is 0 (5=5), of 3 is 1 (6!=5), of 4 is 3 (7!=6).
    assert out["class_R@1"] == pytest.approx(3 / 5)


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("spread", [0.1, 10.0])  # few / most scores reach the weakest positive
def test_count_ge_sparse_and_dense_paths_equal_brute_force(
    dim: int, spread: float, monkeypatch
) -> None:
    from contrastkit.eval.retrieval import threshold_counts as R

    g = torch.Generator().manual_seed(dim)
    tile = torch.randn(40, 60, generator=g).round(decimals=1)  # many exact ties
    n = tile.shape[1 - dim]
    thresholds = (2.2 + spread * torch.rand(5, n, generator=g)).round(decimals=1)
    thresholds = thresholds.sort(0, descending=True).values - (spread > 1) * 4.0
    thresholds[3:, : n // 2] = math.inf  # queries with only 3 positives (padding)
    thresholds[:, 0] = tile.select(1 - dim, 0).max()  # ties with the best score
    want = torch.stack([(tile >= t.unsqueeze(dim)).sum(dim) for t in thresholds]).int()
    dense_calls = []
    dense = R._count_ge_dense
    monkeypatch.setattr(R, "_count_ge_dense", lambda *a: dense_calls.append(1) or dense(*a))
    out = torch.full_like(want, 7)
    R._count_ge(tile, thresholds, dim, out)
    assert torch.equal(out, want + 7)
    assert bool(dense_calls) == (spread > 1)  # few candidates: sparse; most: dense
    monkeypatch.undo()
    out = torch.full_like(want, 7)
    R._count_ge_dense(tile, thresholds, dim, out)
    assert torch.equal(out, want + 7)
