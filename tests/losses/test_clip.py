"""ClipLoss: hand-computed geometry, exact reduction to CLIP, multi-positive properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.errors import ConfigError
from contrastkit.losses.clip import ClipLoss
from contrastkit.losses.functional import (
    softmax_contrastive_loss,
    softmax_contrastive_loss_dense,
)


def _fixed(temperature: float, **kw) -> ClipLoss:
    loss = ClipLoss(init_temperature=temperature, learnable=False, **kw).double()
    loss.logit_scale.fill_(math.log(1 / temperature))  # exact in float64
    return loss


def _unit(angles_deg: list[float]) -> torch.Tensor:
    t = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([t.cos(), t.sin()], 1)


def _random(n: int, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return a, b


def test_orthogonal_pairs_hand_value() -> None:
    # logits [[2, 0], [0, 2]] at scale 2: each row's CE is log(1 + e^-2).
    x = _unit([0, 90])
    r = _fixed(0.5)(x, x, torch.tensor([0, 1]))
    expected = math.log(1 + math.exp(-2))
    assert r.loss.item() == pytest.approx(expected, abs=1e-12)
    assert r.a_to_b.item() == pytest.approx(expected, abs=1e-12)
    assert r.num_positives == 2
    assert r.stats["pos_sim"] == pytest.approx(1.0)
    assert r.stats["neg_sim"] == pytest.approx(0.0, abs=1e-12)


def test_three_rows_at_120_degrees() -> None:
    # cos = 1 on the diagonal, -1/2 off it; scale 10 -> CE = log(1 + 2 e^-15).
    x = _unit([0, 120, 240])
    r = _fixed(0.1)(x, x, torch.arange(3))
    assert r.loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-15)), rel=1e-9)


def test_multi_positive_target_is_uniform_over_group() -> None:
    # Both rows in one group: CE = LSE(2, 0) - mean(2, 0) = log(e^2 + 1) - 1.
    x = _unit([0, 90])
    r = _fixed(0.5)(x, x, torch.tensor([7, 7]))
    assert r.loss.item() == pytest.approx(math.log(math.exp(2) + 1) - 1, abs=1e-12)
    assert r.num_positives == 4


def test_unique_groups_equal_plain_clip_loss_and_grads() -> None:
    a, b = _random(9)
    a.requires_grad_(True)
    b.requires_grad_(True)
    loss = ClipLoss().double()
    ours = loss(a, b, torch.arange(9) * 3 + 1).loss
    s = loss.logit_scale.exp()
    logits = s * a @ b.T
    ref = 0.5 * (
        F.cross_entropy(logits, torch.arange(9)) + F.cross_entropy(logits.T, torch.arange(9))
    )
    assert ours.item() == pytest.approx(ref.item(), abs=1e-12)
    g_ours = torch.autograd.grad(ours, [a, b, loss.logit_scale])
    g_ref = torch.autograd.grad(ref, [a, b, loss.logit_scale])
    for x, y in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-10)


def test_fused_equals_dense_with_shared_groups() -> None:
    a, b = _random(8, seed=3)
    groups = torch.tensor([0, 0, 1, 2, 2, 2, 3, 1])
    scale = torch.tensor(5.0, dtype=torch.float64)
    fused = softmax_contrastive_loss(a, b, scale, groups, groups)
    dense = softmax_contrastive_loss_dense(a, b, scale, groups, groups)
    assert fused.loss.item() == pytest.approx(dense.loss.item(), abs=1e-12)
    assert fused.a_to_b.item() == pytest.approx(dense.a_to_b.item(), abs=1e-12)
    assert fused.b_to_a.item() == pytest.approx(dense.b_to_a.item(), abs=1e-12)


def test_gradcheck_fused_and_hard_negative() -> None:
    a, b = _random(6, seed=1)
    groups = torch.tensor([0, 0, 1, 2, 3, 3])
    a.requires_grad_(True)
    b.requires_grad_(True)
    log_s = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, s: softmax_contrastive_loss(a, b, s.exp(), groups, groups).loss, (a, b, log_s)
    )
    assert torch.autograd.gradcheck(
        lambda a, b, s: softmax_contrastive_loss_dense(a, b, s.exp(), groups, groups, 2.0).loss,
        (a, b, log_s),
    )
    module = ClipLoss().double()
    assert torch.autograd.gradcheck(lambda a, b: module(a, b, groups).loss, (a, b))


def test_logit_scale_is_log_of_inverse_temperature_and_clamped_on_the_parameter() -> None:
    loss = ClipLoss()
    assert loss.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert dict(loss.named_parameters()).keys() == {"logit_scale"}
    with torch.no_grad():
        loss.logit_scale.fill_(math.log(500.0))
    loss.clamp_parameters_()
    assert loss.logit_scale.item() == pytest.approx(math.log(100.0), abs=1e-6)
    a, b = _random(4)
    r = loss(a.float().requires_grad_(), b.float(), torch.arange(4))
    r.loss.backward()
    assert loss.logit_scale.grad.item() != 0.0  # at the ceiling the gradient is live
    assert r.logit_scale.item() == pytest.approx(100.0, rel=1e-6)
    with torch.no_grad():
        loss.logit_scale.fill_(-3.0)
    loss.clamp_parameters_()
    assert loss.logit_scale.item() == 0.0  # floor: scale 1 (temperature 1)


def test_initial_scale_above_the_ceiling_is_an_error() -> None:
    with pytest.raises(ConfigError, match="above max_logit_scale"):
        ClipLoss(init_temperature=0.001)


def test_hard_negative_beta_zero_is_plain_and_beta_upweights_hard_negatives() -> None:
    a, b = _random(6, seed=2)
    groups = torch.arange(6)
    s = torch.tensor(10.0, dtype=torch.float64)
    plain = softmax_contrastive_loss(a, b, s, groups, groups).loss
    beta0 = softmax_contrastive_loss_dense(a, b, s, groups, groups, 0.0).loss
    assert plain.item() == pytest.approx(beta0.item(), abs=1e-12)
    # Re-weighting moves mass to the most similar negatives, which have the largest
    # exp(logit): the weighted denominator (and so the loss) can only grow.
    hard = softmax_contrastive_loss_dense(a, b, s, groups, groups, 5.0).loss
    assert hard.item() > plain.item()


def test_one_tower_is_an_error() -> None:
    from contrastkit.errors import ConfigError

    with pytest.raises(ConfigError, match="two towers"):
        ClipLoss()(torch.randn(3, 2), None, torch.arange(3))


groups_strategy = st.lists(st.integers(0, 4), min_size=2, max_size=10)


@settings(max_examples=30, deadline=None)
@given(groups=groups_strategy, seed=st.integers(0, 1000))
def test_permutation_invariance(groups: list[int], seed: int) -> None:
    n = len(groups)
    a, b = _random(n, seed=seed)
    g = torch.tensor(groups)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    loss = _fixed(0.1)
    assert loss(a, b, g).loss.item() == pytest.approx(
        loss(a[perm], b[perm], g[perm]).loss.item(), abs=1e-10
    )


@settings(max_examples=30, deadline=None)
@given(groups=groups_strategy, seed=st.integers(0, 1000))
def test_loss_above_entropy_lower_bound(groups: list[int], seed: int) -> None:
    # CE(target, p) >= H(target) = log |P_i| for the uniform target over P_i.
    a, b = _random(len(groups), seed=seed)
    g = torch.tensor(groups)
    counts = (g[:, None] == g[None, :]).sum(1).double()
    bound = counts.log().mean().item()
    assert _fixed(0.01)(a, b, g).loss.item() >= bound - 1e-9
    # Perfectly aligned groups (identical embeddings within a group) approach the bound.
    x = F.one_hot(g, 5).double()
    assert _fixed(0.01)(x, x, g).loss.item() == pytest.approx(bound, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 10), seed=st.integers(0, 1000))
def test_unique_groups_reduce_to_clip(n: int, seed: int) -> None:
    a, b = _random(n, seed=seed)
    s = 1 / 0.07
    labels = torch.arange(n)
    ref = 0.5 * (F.cross_entropy(s * a @ b.T, labels) + F.cross_entropy(s * b @ a.T, labels))
    got = _fixed(0.07)(a, b, torch.randperm(n) + 100).loss
    assert got.item() == pytest.approx(ref.item(), abs=1e-10)


def _far_apart_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 pairs where row/column 1's best logit sits ~109 below the global max at
    scale 100, so exp(x − max x) underflows to 0 in float32 for that whole row/column."""
    a = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0.3, 0, 0], [0, 0.2, 1.0, 0], [0, 0.3, 0, 1.0]])
    b = torch.tensor([[1.0, 0, 0, 0], [-0.2, -1.0, 0, 0], [0.2, 0, 1.0, 0], [0.3, 0, 0.4, 1.0]])
    return F.normalize(a.double(), dim=1), F.normalize(b.double(), dim=1)


def test_rows_far_below_the_global_max_are_recomputed_exactly(monkeypatch) -> None:
    a64, b64 = _far_apart_rows()
    groups = torch.tensor([0, 1, 2, 2])
    scale = torch.tensor(100.0)

    def run(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        a = a64.to(dtype).requires_grad_(True)
        b = b64.to(dtype).requires_grad_(True)
        s = scale.to(dtype).requires_grad_(True)
        loss = softmax_contrastive_loss(a, b, s, groups, groups).loss
        return (loss, *torch.autograd.grad(loss, [a, b, s]))

    dense_a, dense_b = a64.clone().requires_grad_(True), b64.clone().requires_grad_(True)
    dense_s = scale.double().requires_grad_(True)
    ref = softmax_contrastive_loss_dense(dense_a, dense_b, dense_s, groups, groups).loss
    ref_all = (ref, *torch.autograd.grad(ref, [dense_a, dense_b, dense_s]))
    for ours, want in zip(run(torch.float32), ref_all, strict=True):
        torch.testing.assert_close(ours.double(), want, rtol=1e-5, atol=1e-5)
    # The fallback is what makes float32 right here: without it the row sum is 0.
    monkeypatch.setattr("contrastkit.losses.functional._underflow_floor", lambda dtype: 0.0)
    assert not torch.isfinite(run(torch.float32)[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loss_is_float32_under_autocast_and_for_half_inputs(dtype: torch.dtype) -> None:
    a, b = (x.float() for x in _random(64, d=32, seed=2))
    groups = torch.arange(64) // 2
    loss = ClipLoss()
    want = loss(a, b, groups).loss
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_amp = loss(a, b, groups).loss
    assert under_amp.dtype == torch.float32
    assert under_amp.item() == pytest.approx(want.item(), rel=1e-6)
    half = loss(a.to(dtype), b.to(dtype), groups).loss  # towers ran in half precision
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(want.item(), rel=2e-2)
