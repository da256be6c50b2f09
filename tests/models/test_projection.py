"""Projection head: unit-norm output, hand-checked linear case, gradcheck."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import ProjectionConfig
from contrastkit.models.projection import (
    Projection,
    build_projection,
    resolve_projection,
    shared_orthogonal,
)


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


def test_none_is_normalised_pooled_output() -> None:
    proj = build_projection(ProjectionConfig(type="none"), 4, 99)
    x = torch.tensor([[3.0, 0.0, 4.0, 0.0]])
    torch.testing.assert_close(proj(x), torch.tensor([[0.6, 0.0, 0.8, 0.0]]))
    assert proj.embed_dim == 4 and not list(proj.parameters())


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_identity_init_keeps_the_input_direction(kind: str) -> None:
    proj = Projection(6, 6, kind=kind, hidden=5, init="identity")
    x = torch.randn(3, 6)
    torch.testing.assert_close(proj(x), torch.nn.functional.normalize(x, dim=-1))


def test_shared_orthogonal_is_one_map_per_size_pair() -> None:
    a, b = shared_orthogonal(8, 3), shared_orthogonal(8, 3)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a @ a.T, torch.eye(3), atol=1e-6, rtol=0)  # orthonormal rows
    up = shared_orthogonal(3, 8)
    torch.testing.assert_close(up.T @ up, torch.eye(3), atol=1e-6, rtol=0)  # an isometry
    # Widening keeps every cosine exactly.
    x, y = torch.randn(3), torch.randn(3)
    cos = torch.nn.functional.cosine_similarity
    torch.testing.assert_close(cos(up @ x, up @ y, dim=0), cos(x, y, dim=0))


@pytest.mark.parametrize(
    ("cfg", "pretrained", "embedding", "expected"),
    [
        ({}, False, False, ("linear", "random")),
        ({}, True, False, ("linear", "identity")),
        ({}, True, True, ("none", "identity")),
        ({"type": "mlp", "init": "random"}, True, True, ("mlp", "random")),
    ],
)
def test_auto_resolution(cfg, pretrained, embedding, expected) -> None:
    got = resolve_projection(ProjectionConfig(**cfg), pretrained=pretrained, embedding=embedding)
    assert got == expected
