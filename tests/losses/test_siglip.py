"""SiglipLoss: hand values, blockwise == dense for loss and every gradient, gradcheck."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.errors import ConfigError
from contrastkit.losses.siglip import SiglipLoss, sigmoid_loss_blockwise, sigmoid_loss_dense


def _random(n: int, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return a.requires_grad_(), b.requires_grad_()


def _scalars(log_scale: float, bias: float) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(log_scale, dtype=torch.float64, requires_grad=True),
        torch.tensor(bias, dtype=torch.float64, requires_grad=True),
    )


def test_orthogonal_pairs_hand_value() -> None:
    # t = 1, b = 0: logits diag 1, off-diagonal 0.
    # L = -(1/2)[2 log σ(1) + 2 log σ(0)] = log(1 + e^-1) + log 2.
    x = torch.eye(2, dtype=torch.float64)
    t, bias = _scalars(0.0, 0.0)
    loss = sigmoid_loss_blockwise(x, x, t, bias, torch.arange(2), torch.arange(2), block_size=1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)) + math.log(2), abs=1e-12)


def test_shared_group_turns_negative_into_positive() -> None:
    # One group: all four pairs positive (z = +1). t = 1, bias = -1 gives logits 0 on the
    # diagonal and -1 off it: L = -(1/2)[2 log σ(0) + 2 log σ(-1)].
    x = torch.eye(2, dtype=torch.float64)
    t, bias = _scalars(0.0, -1.0)
    same = sigmoid_loss_blockwise(
        x, x, t, bias, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long)
    )
    expected = -(2 * math.log(1 / (1 + math.exp(-0.0))) + 2 * math.log(1 / (1 + math.exp(1.0)))) / 2
    assert same.item() == pytest.approx(expected, abs=1e-12)


def test_defaults_follow_the_paper() -> None:
    loss = SiglipLoss()
    params = dict(loss.named_parameters())
    assert set(params) == {"logit_scale", "logit_bias"}
    assert params["logit_scale"].item() == pytest.approx(math.log(10))
    assert params["logit_bias"].item() == pytest.approx(-10.0)
    frozen = SiglipLoss(learnable=False)
    assert not list(frozen.parameters())


@pytest.mark.parametrize("block", [1, 2, 3, 5, 7, 64])
def test_blockwise_equals_dense(block: int) -> None:
    a, b = _random(7, seed=block)
    groups = torch.tensor([0, 0, 1, 2, 2, 2, 3])
    t, bias = _scalars(math.log(10), -3.0)
    inputs = [a, b, t, bias]
    ours = sigmoid_loss_blockwise(a, b, t, bias, groups, groups, block_size=block)
    ref = sigmoid_loss_dense(a, b, t, bias, groups, groups)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-12)
    for g1, g2 in zip(
        torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs), strict=True
    ):
        torch.testing.assert_close(g1, g2, atol=1e-12, rtol=1e-10)


def test_gradcheck_blockwise_with_block_smaller_than_batch() -> None:
    a, b = _random(5, seed=11)
    groups = torch.tensor([0, 1, 1, 2, 3])
    t, bias = _scalars(0.7, -1.5)
    assert torch.autograd.gradcheck(
        lambda a, b, t, c: sigmoid_loss_blockwise(a, b, t, c, groups, groups, block_size=2),
        (a, b, t, bias),
    )


def test_module_reports_scale_bias_and_positives() -> None:
    a, b = _random(4)
    loss = SiglipLoss(block_size=3).double()
    r = loss(a, b, torch.tensor([0, 0, 1, 2]))
    assert r.logit_scale.item() == pytest.approx(10.0)
    assert r.logit_bias.item() == pytest.approx(-10.0)
    assert r.num_positives == 6  # 2² + 1 + 1
    r.loss.backward()
    assert loss.logit_scale.grad is not None and loss.logit_bias.grad is not None


def test_no_grad_forward_matches() -> None:
    a, b = _random(6)
    t, bias = _scalars(1.0, -2.0)
    groups = torch.arange(6)
    with torch.no_grad():
        ours = sigmoid_loss_blockwise(a, b, t, bias, groups, groups, block_size=4)
    assert ours.item() == pytest.approx(sigmoid_loss_dense(a, b, t, bias, groups, groups).item())


def test_bad_block_size() -> None:
    with pytest.raises(ConfigError, match="block_size"):
        SiglipLoss(block_size=0)


@settings(max_examples=25, deadline=None)
@given(
    groups=st.lists(st.integers(0, 3), min_size=1, max_size=9),
    block=st.integers(1, 10),
    seed=st.integers(0, 1000),
)
def test_blockwise_equals_dense_random_layouts(groups: list[int], block: int, seed: int) -> None:
    a, b = _random(len(groups), seed=seed)
    g = torch.tensor(groups)
    t, bias = _scalars(1.0, -2.0)
    ours = sigmoid_loss_blockwise(a, b, t, bias, g, g, block_size=block)
    ref = sigmoid_loss_dense(a, b, t, bias, g, g)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    ga = torch.autograd.grad(ours, [a, t, bias])
    gr = torch.autograd.grad(ref, [a, t, bias])
    for x, y in zip(ga, gr, strict=True):
        torch.testing.assert_close(x, y, atol=1e-10, rtol=1e-8)


def test_optional_ceiling_clamps_the_log_scale_in_place() -> None:
    free = SiglipLoss()
    with torch.no_grad():
        free.logit_scale.fill_(math.log(150.0))
    free.clamp_parameters_()
    assert free.logit_scale.item() == pytest.approx(math.log(150.0))  # no ceiling by default
    capped = SiglipLoss(max_logit_scale=100.0)
    with torch.no_grad():
        capped.logit_scale.fill_(math.log(150.0))
    capped.clamp_parameters_()
    assert capped.logit_scale.item() == pytest.approx(math.log(100.0))
    with pytest.raises(ConfigError, match="above ln max_logit_scale"):
        SiglipLoss(init_logit_scale=math.log(200.0), max_logit_scale=100.0)
