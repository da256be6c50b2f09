"""Euclidean distances stay accurate for near-duplicates (value and gradient, float32).

The expansion √(||x||² + ||y||² − 2x·y) alone loses 40% at d = 1e-3 and 670% at d = 1e-4
for unit vectors in float32; the reference here is float64 on the same float32 inputs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastkit.losses import functional
from contrastkit.losses.functional import pairwise_distance


def _near_pairs(d: float, n: int = 6, dim: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit rows x and y = x + d·u (u a unit direction), plus far rows in between."""
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    u = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=1)
    return x.float(), (x + d * u).float()


def _weighted(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances and d(Σ w·dist)/dx, dy with fixed weights w."""
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    dist = pairwise_distance(x, y, "euclidean")
    w = torch.linspace(0.5, 1.5, dist.numel(), dtype=dist.dtype).reshape(dist.shape)
    gx, gy = torch.autograd.grad((w * dist).sum(), [x, y])
    return dist.detach(), torch.cat([gx, gy])


@pytest.mark.parametrize("d", [1e-3, 1e-4])
def test_near_duplicates_match_float64_in_value_and_gradient(d: float) -> None:
    x, y = _near_pairs(d)
    dist, grad = _weighted(x, y)
    ref_dist, ref_grad = _weighted(x.double(), y.double())
    diag = dist.diagonal()
    assert diag.double().div(ref_dist.diagonal()).sub(1).abs().max() < 1e-4
    torch.testing.assert_close(dist.double(), ref_dist, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=1e-4, atol=1e-5)


def test_far_pairs_use_the_expansion_and_match_cdist() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(9, 5, generator=g)
    torch.testing.assert_close(
        pairwise_distance(x, y.double(), "euclidean"),
        torch.cdist(x, y.double()),
        rtol=1e-12,
        atol=0,
    )


def test_identical_rows_give_zero_with_zero_gradient() -> None:
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    dist = pairwise_distance(x, x, "euclidean")
    assert torch.equal(dist.diagonal(), torch.zeros(3, dtype=torch.float64))
    (g,) = torch.autograd.grad(dist.diagonal().sum(), [x])
    assert torch.equal(g, torch.zeros_like(g))


def test_chunked_near_pairs_equal_one_chunk_with_gradcheck(monkeypatch) -> None:
    # Many near pairs (a collapsed batch) split over several chunks: same values and an
    # analytic backward that passes gradcheck.
    g = torch.Generator().manual_seed(2)
    base = torch.randn(1, 3, generator=g, dtype=torch.float64)
    x = (base + 1e-3 * torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_()
    y = (base + 1e-3 * torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    whole = pairwise_distance(x, y, "euclidean")
    monkeypatch.setattr(functional, "NEAR_CHUNK", 3)
    torch.testing.assert_close(pairwise_distance(x, y, "euclidean"), whole, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda a, b: pairwise_distance(a, b, "euclidean"), (x, y))
