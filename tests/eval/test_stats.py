import math

import pytest
import torch

from contrastkit.eval.stats import (
    alignment_loss,
    alignment_score,
    effective_rank,
    embedding_stats,
    modality_gap,
    per_dimension_std,
    pos_neg_means,
    positive_negative_gap,
    uniformity_loss,
)


def test_identical_embeddings_are_perfectly_aligned():
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    assert alignment_score(x, 3 * x) == pytest.approx(1.0)
    assert alignment_loss(x, x) == pytest.approx(0.0)
    assert modality_gap(x, x) == pytest.approx(0.0)


def test_positive_negative_gap_on_orthonormal_pairs():
    e = torch.eye(4)
    assert positive_negative_gap(e, e) == pytest.approx(1.0)  # pos 1, negatives 0
    # Brute-force check with groups on random data.
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(9, 3, generator=g), torch.randn(9, 3, generator=g)
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4])
    an, bn = (
        torch.nn.functional.normalize(a.double(), dim=1),
        torch.nn.functional.normalize(b.double(), dim=1),
    )
    sims = an @ bn.T
    same = groups.unsqueeze(1) == groups.unsqueeze(0)
    # Positives are every same-group pair, as the loss and the doctor count them.
    want = (sims[same].mean() - sims[~same].mean()).item()
    assert positive_negative_gap(a, b, groups) == pytest.approx(want)
    pos, neg = pos_neg_means(a[:4], b, groups[:4], groups)  # N != M, one home for all
    sub = sims[:4]
    mask = groups[:4].unsqueeze(1) == groups.unsqueeze(0)
    assert (pos, neg) == pytest.approx((sub[mask].mean().item(), sub[~mask].mean().item()))


def test_modality_gap_of_two_opposite_points():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])
    assert modality_gap(a, b) == pytest.approx(2.0)


def test_effective_rank_of_orthonormal_basis_and_collapse():
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0, rel=1e-6)
    assert effective_rank(torch.ones(5, 6)) == pytest.approx(1.0, rel=1e-6)


def test_uniformity_of_antipodal_points_and_subsample():
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity_loss(x) == pytest.approx(-2 * 4.0)  # log exp(-t * 4)
    many = torch.randn(300, 3, generator=torch.Generator().manual_seed(2))
    full, sub = uniformity_loss(many), uniformity_loss(many, max_samples=200)
    assert sub == pytest.approx(full, abs=0.1) and sub != full


def test_per_dimension_std_of_collapse_is_zero():
    assert per_dimension_std(torch.ones(5, 3)).abs().max() == 0
    std = per_dimension_std(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    assert std.tolist() == pytest.approx([1.0, 0.0])


def test_embedding_stats_keys():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(3))
    stats = embedding_stats(x, x)
    assert stats["alignment"] == pytest.approx(1.0)
    assert all(math.isfinite(v) for v in stats.values())
