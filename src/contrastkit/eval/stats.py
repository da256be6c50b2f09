"""Embedding-space statistics that reveal collapse and misalignment: the one home of
every similarity, collapse and rank measure in contrastkit.

The losses (positive / negative cosine means they log), the doctor's monitors (the same
on each training batch, plus collapse) and evaluation (on a whole split) all call these
functions, so a number means the same thing in `metrics.jsonl`, `signals.jsonl` and
`summary.json`. Definitions used throughout:
- a *positive* pair is any (a_i, b_j) with the same group id (so with five captions per
  image, every caption-image pair of that image), a *negative* any other pair;
- effective rank is RankMe with one epsilon (`RANK_EPS`).

All functions are pure, take raw embeddings (normalised here) and never build an N×N
matrix except `uniformity`, which subsamples, and the in-batch recall of
`similarity_stats`, which is meant for one training batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from contrastkit.errors import DataError

UNIFORMITY_MAX_SAMPLES = 4096  # pairwise term is O(n²): 4096² floats = 64 MiB
RANK_EPS = 1e-12  # floor of a singular-value share inside log (RankMe); 0·log 0 = 0


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


def pos_neg_means(
    a: Tensor, b: Tensor, groups_a: Tensor | None = None, groups_b: Tensor | None = None
) -> tuple[float, float]:
    """Mean cosine over positive pairs and over negative pairs (see the module docstring).

    Exact, in O((N + M)·D): Σ_ij a_i·b_j = (Σa)·(Σb), and the positive total is the sum
    over groups of (Σ_group a)·(Σ_group b). NaN where there is no pair of that kind.
    Without groups, row i of `a` matches row i of `b` only.

    Shape: a: N x D, b: M x D, groups_a: N, groups_b: M.
    """
    an, bn = _normalise(a), _normalise(b)
    if groups_a is None:
        groups_a = torch.arange(len(an))
    if groups_b is None:
        groups_b = torch.arange(len(bn))
    # On the embeddings' device: the losses call this every step, on GPU too.
    ga = torch.as_tensor(groups_a).detach().to(an.device).long()
    gb = torch.as_tensor(groups_b).detach().to(an.device).long()
    bn = bn.to(an.device)
    ids, inverse = torch.unique(torch.cat([ga, gb]), return_inverse=True)
    ia, ib = inverse[: len(ga)], inverse[len(ga) :]
    sum_a = an.new_zeros(len(ids), an.shape[1]).index_add_(0, ia, an)
    sum_b = an.new_zeros(len(ids), bn.shape[1]).index_add_(0, ib, bn)
    count_a = torch.bincount(ia, minlength=len(ids)).double()
    count_b = torch.bincount(ib, minlength=len(ids)).double()
    totals = torch.stack([(count_a * count_b).sum(), (sum_a * sum_b).sum(), an.sum(0) @ bn.sum(0)])
    n_pos, pos_total, all_total = totals.tolist()  # one device sync
    n_neg = len(an) * len(bn) - n_pos
    neg_total = all_total - pos_total
    pos = pos_total / n_pos if n_pos else float("nan")
    neg = neg_total / n_neg if n_neg else float("nan")
    return pos, neg


def positive_negative_gap(a: Tensor, b: Tensor, groups: Tensor | None = None) -> float:
    """Mean positive cosine minus mean negative cosine of row-aligned embeddings.

    Near 0: the space does not separate matches.

    Raises:
        DataError: every row is in one group (no negative pair).
    """
    _check_pairs(a, b)
    pos, neg = pos_neg_means(a, b, groups, groups)
    if math.isnan(neg):
        raise DataError("stats: the positive-negative gap needs rows from at least 2 groups")
    return pos - neg


def similarity_stats(a: Tensor, b: Tensor, groups: Tensor) -> dict[str, float]:
    """Positive / negative cosine means between two towers' embeddings of one batch.

    `gap` = pos − neg is the alignment score: > 0 aligned, ~ 0 not aligned, < 0
    anti-aligned. `batch_r1` is the share of rows of `a` whose most similar `b` is a
    positive (in-batch recall@1; builds the B x B matrix of one training batch).

    Shape: a, b: B x D, groups: B.
    """
    pos, neg = pos_neg_means(a, b, groups, groups)
    an = torch.nn.functional.normalize(a.detach().float(), dim=-1)
    bn = torch.nn.functional.normalize(b.detach().float(), dim=-1)
    g = torch.as_tensor(groups).to(an.device)
    best = (an @ bn.T).argmax(dim=1)
    r1 = float((g[best] == g).float().mean())
    return {"pos_sim": pos, "neg_sim": neg, "gap": pos - neg, "batch_r1": r1}


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
    p = s / s.sum().clamp(min=1e-300)
    return math.exp(-(p * p.clamp_min(RANK_EPS).log()).sum().item())


def collapse_stats(emb: Tensor) -> dict[str, float]:
    """Spread of one set of embeddings.

    `std` is the mean per-dimension standard deviation of the L2-normalised embeddings;
    `std_ratio` = std * sqrt(D) is ~1 for embeddings spread evenly over the sphere and 0
    when they are all equal; `effective_rank` is RankMe on the normalised embeddings.

    Shape: emb: B x D.
    """
    d = emb.shape[1]
    std = per_dimension_std(emb).mean().item()
    rank = effective_rank(torch.nn.functional.normalize(emb.detach().double(), dim=-1))
    return {"std": std, "std_ratio": std * math.sqrt(d), "effective_rank": rank, "dim": float(d)}


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
