"""TripletLoss: hand-computed geometry, brute-force equivalence, gradcheck, stats."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.errors import DataError
from contrastkit.losses import triplet as triplet_module
from contrastkit.losses.triplet import TripletLoss


def _three_rows() -> torch.Tensor:
    # a0 at 0°, a1 at 60° (same group), a2 at 90° (other group).
    # cosine distances: d01 = 0.5, d02 = 1, d12 = 1 - sin 60° ≈ 0.134.
    t = torch.tensor([0.0, 60.0, 90.0], dtype=torch.float64) * math.pi / 180
    return torch.stack([t.cos(), t.sin()], 1)


GROUPS3 = torch.tensor([0, 0, 1])
D12 = 1 - math.sin(math.pi / 3)


@pytest.mark.parametrize("miner", ["all", "batch_hard"])
def test_hand_value_one_set(miner: str) -> None:
    # Anchor 0: 0.5 + 0.2 - 1 < 0 (satisfied). Anchor 1: 0.5 + 0.2 - 0.134 = 0.566.
    # Anchor 2 has no positive. Mean over the 2 triplets.
    r = TripletLoss(miner=miner)(_three_rows(), None, GROUPS3)
    assert r.loss.item() == pytest.approx((0.7 - D12) / 2, abs=1e-12)
    assert r.stats["triplets"] == 2
    assert r.stats["frac_satisfied"] == pytest.approx(0.5)
    assert r.stats["mean_margin"] == pytest.approx(0.2)
    assert r.stats["pos_dist"] == pytest.approx(0.5)
    assert r.stats["neg_dist"] == pytest.approx((1 + D12) / 2)


def test_semi_hard_finds_nothing_in_the_hand_case() -> None:
    # Anchor 0: d_an = 1 is beyond d_ap + m = 0.7; anchor 1: d_an = 0.134 < d_ap = 0.5.
    x = _three_rows().requires_grad_()
    r = TripletLoss(miner="semi_hard")(x, None, GROUPS3)
    assert r.stats["triplets"] == 0 and r.loss.item() == 0.0
    r.loss.backward()  # still connected to the graph
    assert torch.all(x.grad == 0)


def test_adaptive_margin_hand_value() -> None:
    # attr distance anchor->row 2 is 3: margin 0.2 + 0.1 * 3 = 0.5.
    # Anchor 0: 0.5 + 0.5 - 1 = 0 (not violated); anchor 1: 0.5 + 0.5 - 0.134.
    attrs = torch.tensor([[0.0], [0.0], [3.0]], dtype=torch.float64)
    r = TripletLoss(miner="all", margin_scale=0.1)(_three_rows(), None, GROUPS3, attributes=attrs)
    assert r.loss.item() == pytest.approx((1.0 - D12) / 2, abs=1e-12)
    assert r.stats["mean_margin"] == pytest.approx(0.5)


def _random(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, 4, generator=g, dtype=torch.float64), dim=1)
    attrs = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return a.requires_grad_(), b.requires_grad_(), attrs


def _brute_force(a, cand, groups, attrs, one_set, miner, margin_scale, distance):
    if distance == "cosine":
        d = 1 - F.normalize(a, dim=1) @ F.normalize(cand, dim=1).T
    else:
        d = torch.cdist(a, cand)
    losses = []
    for i in range(len(a)):
        for p in range(len(cand)):
            if groups[p] != groups[i] or (one_set and p == i):
                continue
            for n in range(len(cand)):
                if groups[n] == groups[i]:
                    continue
                m = 0.2 + margin_scale * (attrs[i] - attrs[n]).norm()
                if miner == "semi_hard" and not (d[i, p] < d[i, n] < d[i, p] + m):
                    continue
                losses.append((d[i, p] + m - d[i, n]).clamp_min(0))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("one_set", [True, False])
@pytest.mark.parametrize("miner", ["all", "semi_hard"])
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_matches_brute_force_triplets(
    one_set: bool, miner: str, distance: str, monkeypatch
) -> None:
    monkeypatch.setattr(triplet_module, "TRIPLET_CHUNK_ELEMENTS", 2 * 81)  # 2 anchors per chunk
    a, b, attrs = _random(9, seed=5)
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    loss = TripletLoss(miner=miner, margin_scale=0.5, distance=distance)
    got = loss(a, None if one_set else b, groups, attributes=attrs).loss
    ref = _brute_force(a, a if one_set else b, groups, attrs, one_set, miner, 0.5, distance)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    inputs = [a] if one_set else [a, b]
    for g1, g2 in zip(
        torch.autograd.grad(got, inputs), torch.autograd.grad(ref, inputs), strict=True
    ):
        torch.testing.assert_close(g1, g2, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("miner", ["all", "batch_hard", "semi_hard", "percentile"])
def test_gradcheck(miner: str) -> None:
    a, b, attrs = _random(6, seed=2)
    groups = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = TripletLoss(miner=miner, margin_scale=0.3)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, groups, attributes=attrs).loss, (a, b))


def test_same_label_negatives_restricts_negatives() -> None:
    a, _, _ = _random(6, seed=3)
    labels = torch.tensor([0, 0, 0, 1, 1, -1])
    groups = torch.tensor([0, 0, 1, 2, 3, 4])
    r = TripletLoss(miner="all", same_label_negatives=True)(a, None, groups, labels=labels)
    # Only anchors 0 and 1 have a positive; their same-label negative is row 2 only.
    assert r.stats["triplets"] == 2


def test_missing_attributes_is_a_data_error() -> None:
    with pytest.raises(DataError, match="attributes"):
        TripletLoss(margin_scale=0.5)(torch.randn(3, 2), None, torch.arange(3))
    with pytest.raises(DataError, match="label"):
        TripletLoss(same_label_negatives=True)(torch.randn(3, 2), None, torch.arange(3))
