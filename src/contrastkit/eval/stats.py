"""Embedding-space statistics that reveal collapse and misalignment.

All functions are pure, take L2-normalised (or raw, where said) embeddings and never
build an N×N matrix except `uniformity`, which subsamples (see there).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit.errors import DataError

UNIFORMITY_MAX_SAMPLES = 4096  # pairwise term is O(n²): 4096² floats = 64 MiB


def _normalise(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x.detach().double(), dim=-1)


def _check_pairs(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise DataError(
            f"stats: paired embeddings must both be N x D, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


def alignment_score(a: Tensor, b: Tensor) -> float:
    """Mean cosine similarity of positive pairs (row i of `a` with row i of `b`)."""
    _check_pairs(a, b)
    return (_normalise(a) * _normalise(b)).sum(1).mean().item()


def positive_negative_gap(a: Tensor, b: Tensor, groups: Tensor | None = None) -> float:
    """Mean positive cosine (row i with row i) minus mean cosine of negative pairs.

    Negatives are the pairs (i, j) from different groups (all i ≠ j without `groups`).
    Their mean uses sums of embeddings, Σ_{i,j} a_i·b_j = (Σa)·(Σb), minus the same
    per-group sums, so no N×N matrix is built. Near 0: the space does not separate matches.
    """
    _check_pairs(a, b)
    n = len(a)
    groups = torch.arange(n) if groups is None else torch.as_tensor(groups).cpu()
    an, bn = _normalise(a), _normalise(b)
    pos = (an * bn).sum(1)
    _, inverse, sizes = torch.unique(groups, return_inverse=True, return_counts=True)
    sum_a = torch.zeros(len(sizes), an.shape[1], dtype=an.dtype).index_add_(0, inverse, an)
    sum_b = torch.zeros(len(sizes), bn.shape[1], dtype=bn.dtype).index_add_(0, inverse, bn)
    num_neg = n * n - int((sizes * sizes).sum())
    if num_neg == 0:
        raise DataError("stats: the positive-negative gap needs rows from at least 2 groups")
    neg_sum = an.sum(0) @ bn.sum(0) - (sum_a * sum_b).sum()
    return (pos.mean() - neg_sum / num_neg).item()


def modality_gap(a: Tensor, b: Tensor) -> float:
    """‖centroid(a) − centroid(b)‖ of normalised embeddings (Liang et al. 2022, "Mind the Gap")."""
    return torch.linalg.vector_norm(_normalise(a).mean(0) - _normalise(b).mean(0)).item()


def alignment_loss(a: Tensor, b: Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola 2020 alignment: E‖f(x) − f(y)‖^α over positive pairs (lower is better)."""
    _check_pairs(a, b)
    return (_normalise(a) - _normalise(b)).norm(dim=1).pow(alpha).mean().item()


def uniformity_loss(
    x: Tensor, t: float = 2.0, *, max_samples: int = UNIFORMITY_MAX_SAMPLES, seed: int = 0
) -> float:
    """Wang & Isola 2020 uniformity: log E exp(−t‖f(x) − f(y)‖²) over distinct pairs.

    Lower is more uniform. Above `max_samples` rows a fixed random subsample (seeded) is
    used, since the pairwise term is quadratic; the estimate stays unbiased.
    """
    xn = _normalise(x)
    if len(xn) < 2:
        raise DataError("stats: uniformity needs at least 2 embeddings")
    if len(xn) > max_samples:
        g = torch.Generator().manual_seed(seed)
        xn = xn[torch.randperm(len(xn), generator=g)[:max_samples]]
    sq = torch.pdist(xn).pow(2)
    return (torch.logsumexp(-t * sq, dim=0) - math.log(len(sq))).item()


def effective_rank(x: Tensor) -> float:
    """RankMe (Garrido et al. 2023): exp of the entropy of normalised singular values.

    Equals D for an orthonormal basis and 1 for a single repeated direction; a value far
    below the embedding width signals dimensional collapse.
    """
    s = torch.linalg.svdvals(x.detach().double())
    p = s / s.sum().clamp(min=1e-300) + 1e-12
    return math.exp(-(p * p.log()).sum().item())


def per_dimension_std(x: Tensor) -> Tensor:
    """Std of each dimension of the L2-normalised embeddings (≈ 1/sqrt(D) when spread out;
    ≈ 0 everywhere means collapse). Shape: D."""
    return _normalise(x).std(dim=0, unbiased=False).float()


def embedding_stats(a: Tensor, b: Tensor, groups: Tensor | None = None) -> dict[str, float]:
    """All paired statistics of two towers' embeddings of the same rows, flat names."""
    return {
        "alignment": alignment_score(a, b),
        "pos_neg_gap": positive_negative_gap(a, b, groups),
        "modality_gap": modality_gap(a, b),
        "align_loss": alignment_loss(a, b),
        "uniformity_a": uniformity_loss(a),
        "uniformity_b": uniformity_loss(b),
        "effective_rank_a": effective_rank(a),
        "effective_rank_b": effective_rank(b),
        "std_a": per_dimension_std(a).mean().item(),
        "std_b": per_dimension_std(b).mean().item(),
    }
