"""Projection head: unit-norm output, hand-checked linear case, gradcheck."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import ProjectionConfig
from contrastkit.models.projection import Projection, build_projection


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_output_is_unit_norm(kind: str) -> None:
    proj = build_projection(ProjectionConfig(type=kind, hidden=7), 5, 3)
    out = proj(torch.randn(4, 5))
    assert out.shape == (4, 3)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4))


def test_linear_projection_hand_computed() -> None:
    proj = Projection(2, 2)
    with torch.no_grad():
        proj.net.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        proj.net.bias.zero_()
    # (3, 2) -> (3, 4) -> /5
    torch.testing.assert_close(proj(torch.tensor([[3.0, 2.0]])), torch.tensor([[0.6, 0.8]]))


def test_gradcheck_float64() -> None:
    proj = Projection(3, 2, kind="mlp", hidden=4).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(proj, (x,))


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="linear"):
        Projection(2, 2, kind="conv")
