"""ClassifierHead: shapes, the linear map, gradients."""

from __future__ import annotations

import pytest
import torch

from contrastkit.models.heads import ClassifierHead


def test_linear_head_is_an_affine_map() -> None:
    torch.manual_seed(0)
    head = ClassifierHead(4, 3)
    pooled = torch.randn(5, 4)
    linear = head.net[-1]
    torch.testing.assert_close(head(pooled), pooled @ linear.weight.T + linear.bias)
    assert sum(p.numel() for p in head.parameters()) == 4 * 3 + 3


def test_mlp_head_shapes_and_parameters() -> None:
    head = ClassifierHead(4, 3, hidden=7, dropout=0.5)
    assert head(torch.randn(5, 4)).shape == (5, 3)
    assert sum(p.numel() for p in head.parameters()) == (4 * 7 + 7) + (7 * 3 + 3)
    head.eval()
    x = torch.randn(2, 4)
    torch.testing.assert_close(head(x), head(x))  # no dropout in eval


@pytest.mark.parametrize("hidden", [None, 5])
def test_gradcheck_float64(hidden: int | None) -> None:
    torch.manual_seed(0)
    head = ClassifierHead(4, 3, hidden=hidden).double()
    pooled = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(head, (pooled,))


def test_rejects_no_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierHead(4, 0)
