"""Miners: never select invalid triplets; each miner's defining property holds."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.errors import ConfigError
from contrastkit.losses.miners import (
    MINERS,
    TripletChunk,
    percentile_thresholds,
    percentile_value,
)


def _chunk(groups: list[int], seed: int, margin: float = 0.3) -> TripletChunk:
    g = torch.tensor(groups)
    n = len(groups)
    gen = torch.Generator().manual_seed(seed)
    dist = torch.rand(n, n, generator=gen, dtype=torch.float64) * 2
    margin_t = margin + torch.rand(n, n, generator=gen, dtype=torch.float64) * 0.2
    not_self = ~torch.eye(n, dtype=torch.bool)
    pos = (g[:, None] == g[None, :]) & not_self
    neg = g[:, None] != g[None, :]
    return TripletChunk(dist, margin_t, pos, neg)


layouts = st.lists(st.integers(0, 3), min_size=2, max_size=8)


@settings(max_examples=40, deadline=None)
@given(groups=layouts, seed=st.integers(0, 10_000), miner=st.sampled_from(MINERS.names()))
def test_miners_select_only_valid_triplets(groups: list[int], seed: int, miner: str) -> None:
    chunk = _chunk(groups, seed)
    mask = MINERS.get(miner)(chunk)
    n = len(groups)
    assert mask.shape == (n, n, n)
    assert not (mask & ~chunk.valid()).any()
    g = torch.tensor(groups)
    a, p, q = mask.nonzero(as_tuple=True)
    assert torch.all(g[a] == g[p]) and torch.all(a != p) and torch.all(g[a] != g[q])


@settings(max_examples=30, deadline=None)
@given(groups=layouts, seed=st.integers(0, 10_000))
def test_batch_hard_picks_the_hardest_pair_per_anchor(groups: list[int], seed: int) -> None:
    chunk = _chunk(groups, seed)
    mask = MINERS.get("batch_hard")(chunk)
    for i in range(len(groups)):
        has_both = bool(chunk.pos[i].any() and chunk.neg[i].any())
        assert int(mask[i].sum()) == int(has_both)
        if has_both:
            p, q = mask[i].nonzero()[0].tolist()
            assert chunk.dist[i, p] == chunk.dist[i][chunk.pos[i]].max()
            hardness = (chunk.margin[i] - chunk.dist[i])[chunk.neg[i]]
            assert chunk.margin[i, q] - chunk.dist[i, q] == hardness.max()


@settings(max_examples=30, deadline=None)
@given(groups=layouts, seed=st.integers(0, 10_000))
def test_semi_hard_band(groups: list[int], seed: int) -> None:
    chunk = _chunk(groups, seed)
    mask = MINERS.get("semi_hard")(chunk)
    hinge = chunk.hinge()
    # Selected triplets violate the margin but the negative is beyond the positive.
    assert torch.all(hinge[mask] > 0)
    a, p, q = mask.nonzero(as_tuple=True)
    assert torch.all(chunk.dist[a, q] > chunk.dist[a, p])
    # And every valid triplet in that band is selected.
    band = chunk.valid() & (hinge > 0) & (chunk.dist[:, None, :] > chunk.dist[:, :, None])
    assert torch.equal(mask, band)


def test_percentile_value_nearest_rank() -> None:
    values = torch.arange(1.0, 101.0)
    assert percentile_value(values, 15).item() == 15.0
    assert percentile_value(values, 85).item() == 85.0
    assert percentile_value(torch.tensor([3.0]), 50).item() == 3.0


def test_percentile_thresholds_ignore_invalid_pairs() -> None:
    d = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]])
    low, high = percentile_thresholds(d, ~torch.eye(3, dtype=torch.bool), 30, 90)
    assert (low.item(), high.item()) == (1.0, 3.0)  # self-pairs (0) never count


def test_unknown_miner() -> None:
    with pytest.raises(ConfigError, match="miner"):
        MINERS.get("nope")
