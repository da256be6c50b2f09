"""Pure maths of the softmax (CLIP / InfoNCE) loss, shared group bookkeeping and distances.

Positives are defined by integer group ids: rows i (side a) and j (side b) are a positive
pair when `groups_a[i] == groups_b[j]`. The multi-positive softmax loss uses, for each row,
the target distribution that is uniform over its positives (SupCon, Khosla et al. 2020);
with all-unique groups it is exactly CLIP's cross-entropy with `arange` labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

# Rows of the B x B matrix turned into dL/dlogits at once (in place); bounds the
# temporary to CHUNK_ROWS x B floats (8 MiB at B = 16384).
CHUNK_ROWS = 128


@dataclass
class GroupSums:
    """Per-row positive bookkeeping computed in O(B·D), without a B x B mask.

    Attributes:
        pos_sum_for_a: B_a x D, sum of b over the positives of each a row.
        pos_sum_for_b: B_b x D, sum of a over the positives of each b row.
        count_a / count_b: positives per a row / per b row.
    """

    pos_sum_for_a: Tensor
    pos_sum_for_b: Tensor
    count_a: Tensor
    count_b: Tensor


def positive_mask(groups_a: Tensor, groups_b: Tensor) -> Tensor:
    """B_a x B_b bool mask, True where the two rows share a group id."""
    return groups_a[:, None] == groups_b[None, :]


def group_sums(a: Tensor, b: Tensor, groups_a: Tensor, groups_b: Tensor) -> GroupSums:
    """Sum embeddings per group so positive logits cost O(B·D) instead of O(B²)."""
    if groups_a is groups_b and torch.unique(groups_a).numel() == len(groups_a):
        # Unique groups shared by both sides (plain CLIP): row i's only positive is row i.
        ones = torch.ones(len(groups_a), dtype=torch.long, device=groups_a.device)
        return GroupSums(b, a, ones, ones)
    _, inverse = torch.unique(torch.cat([groups_a, groups_b]), return_inverse=True)
    inv_a, inv_b = inverse[: len(groups_a)], inverse[len(groups_a) :]
    n = int(inverse.max().item()) + 1 if inverse.numel() else 0
    sum_a = a.new_zeros((n, a.shape[1])).index_add(0, inv_a, a)
    sum_b = b.new_zeros((n, b.shape[1])).index_add(0, inv_b, b)
    cnt_a = torch.bincount(inv_a, minlength=n)
    cnt_b = torch.bincount(inv_b, minlength=n)
    return GroupSums(sum_b[inv_a], sum_a[inv_b], cnt_b[inv_a], cnt_a[inv_b])


def _underflow_floor(dtype: torch.dtype) -> float:
    """Smallest row/column sum of exp(x − max x) trusted as exact: √tiny.

    Terms lost to underflow are each below `tiny`, so a sum above √tiny carries a relative
    error under B·√tiny (≈ 2e-15 for float32 at B = 16384).
    """
    return torch.finfo(dtype).tiny ** 0.5


class _SymmetricLogSumExp(torch.autograd.Function):
    """Σ w_row·LSE_row + Σ w_col·LSE_col of s·A·Bᵀ with one B x B matrix.

    The logits are computed once and exponentiated once, with a single shift (their
    global max), so both directions' sums come from the same matrix: one exp pass and two
    cheap reductions instead of two max-subtract-exp passes (one per direction). A row or
    column whose sum falls below `_underflow_floor` (its best logit sits far below the
    global max, possible at large scales) is recomputed exactly from its own logits.

    When a gradient is needed it is formed in the forward pass, in place, as
    E_ij·(u_i + v_j) with u, v the normalisers, so the whole loss costs three
    B x D x B matmuls and one B x B buffer. Backward only scales the stored gradients
    (no double backward).
    """

    @staticmethod
    def forward(
        ctx, a: Tensor, b: Tensor, scale: Tensor, w_row: Tensor, w_col: Tensor, need_grad: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        a_s = a * scale  # scaling a (B x D) is cheaper than scaling B x B
        exps = torch.matmul(a_s, b.T)
        shift = exps.max()
        for r0 in range(0, exps.shape[0], CHUNK_ROWS):  # two ops per chunk, while cached
            exps[r0 : r0 + CHUNK_ROWS].sub_(shift).exp_()
        row_sum, col_sum = exps.sum(1), exps.sum(0)
        floor = _underflow_floor(exps.dtype)
        bad_rows = (row_sum < floor).nonzero().squeeze(1)
        bad_cols = (col_sum < floor).nonzero().squeeze(1)
        lse_row, lse_col = row_sum.log_() + shift, col_sum.log_() + shift
        if bad_rows.numel():
            lse_row[bad_rows] = torch.logsumexp(a_s[bad_rows] @ b.T, dim=1)
        if bad_cols.numel():
            lse_col[bad_cols] = torch.logsumexp(a_s @ b[bad_cols].T, dim=0)
        total = (w_row * lse_row).sum() + (w_col * lse_col).sum()
        ctx.need_grad = need_grad
        if need_grad:
            # dL/dlogits_ij = w_row_i·softmax_row_ij + w_col_j·softmax_col_ij
            #               = E_ij·(u_i + v_j),  u_i = w_row_i·e^(shift − LSE_row_i).
            u = (w_row * (shift - lse_row).exp()).index_fill_(0, bad_rows, 0.0)
            v = (w_col * (shift - lse_col).exp()).index_fill_(0, bad_cols, 0.0)
            tmp = exps.new_empty((min(CHUNK_ROWS, exps.shape[0]), exps.shape[1]))
            for r0 in range(0, exps.shape[0], CHUNK_ROWS):
                blk = exps[r0 : r0 + CHUNK_ROWS]
                blk.mul_(torch.add(u[r0 : r0 + CHUNK_ROWS, None], v, out=tmp[: len(blk)]))
            grad = exps
            if bad_rows.numel():  # exact rows, from their own logits
                x = a_s[bad_rows] @ b.T
                grad[bad_rows] = (x - lse_row[bad_rows, None]).exp() * w_row[bad_rows, None] + (
                    x - lse_col
                ).exp() * w_col
            if bad_cols.numel():
                x = a_s @ b[bad_cols].T
                grad[:, bad_cols] = (x - lse_row[:, None]).exp() * w_row[:, None] + (
                    x - lse_col[bad_cols]
                ).exp() * w_col[bad_cols]
            grad_a_unscaled = grad @ b
            grad_b = grad.T @ a_s
            grad_scale = (a * grad_a_unscaled).sum()
            del exps, grad
            ctx.save_for_backward(grad_a_unscaled.mul_(scale), grad_b, grad_scale)
        ctx.mark_non_differentiable(lse_row, lse_col)
        return total, lse_row, lse_col

    @staticmethod
    def backward(ctx, grad_total: Tensor, _r: Tensor, _c: Tensor):
        if not ctx.need_grad:
            raise RuntimeError("symmetric log-sum-exp was computed without gradient tracking")
        grad_a, grad_b, grad_scale = ctx.saved_tensors
        return grad_a * grad_total, grad_b * grad_total, grad_scale * grad_total, None, None, None


@dataclass
class SoftmaxParts:
    """Symmetric softmax loss and its two directions (directions detached, for logging)."""

    loss: Tensor
    a_to_b: Tensor
    b_to_a: Tensor
    num_positives: int


def _row_weights(count: Tensor, dtype: torch.dtype) -> Tensor:
    """Mean over rows that have at least one positive (others cannot be scored)."""
    valid = (count > 0).to(dtype)
    return valid / valid.sum().clamp_min(1.0)


def softmax_contrastive_loss(
    a: Tensor, b: Tensor, scale: Tensor, groups_a: Tensor, groups_b: Tensor
) -> SoftmaxParts:
    """Symmetric multi-positive InfoNCE: ½(CE(a→b) + CE(b→a)), target uniform over positives.

    For row i: CE_i = LSE_j(s·a_i·b_j) − (1/|P_i|) Σ_{j∈P_i} s·a_i·b_j. Rows without any
    positive are left out of the mean.

    Shape:
        a: B_a x D, b: B_b x D, scale: 0-dim, groups_*: B_*.
    """
    sums = group_sums(a, b, groups_a, groups_b)
    w_row = _row_weights(sums.count_a, a.dtype)
    w_col = _row_weights(sums.count_b, a.dtype)
    need_grad = torch.is_grad_enabled() and (
        a.requires_grad or b.requires_grad or scale.requires_grad
    )
    lse_total, lse_row, lse_col = _SymmetricLogSumExp.apply(
        a, b, scale, 0.5 * w_row, 0.5 * w_col, need_grad
    )
    # Mean positive logit per row, O(B·D): s·a_i·(Σ_{j∈P_i} b_j) / |P_i|.
    pos_row = scale * (a * sums.pos_sum_for_a).sum(1) / sums.count_a.clamp_min(1)
    pos_col = scale * (b * sums.pos_sum_for_b).sum(1) / sums.count_b.clamp_min(1)
    loss = lse_total - 0.5 * ((w_row * pos_row).sum() + (w_col * pos_col).sum())
    a_to_b = (w_row * (lse_row - pos_row.detach())).sum()
    b_to_a = (w_col * (lse_col - pos_col.detach())).sum()
    return SoftmaxParts(loss, a_to_b.detach(), b_to_a.detach(), int(sums.count_a.sum()))


def _directional_nce(logits: Tensor, cos: Tensor, pos: Tensor, beta: float) -> Tensor:
    """Per-row multi-positive CE, negatives re-weighted by Robinson et al. (2021).

    Negative j of row i gets weight |N_i|·softmax_{k∈N_i}(β·cos_ik), so weights average to
    one (β = 0 gives the plain loss) and harder (more similar) negatives count more.
    Returns the per-row losses (NaN-free; rows without positives give 0).
    """
    neg = ~pos
    log_w = torch.zeros_like(logits)
    if beta > 0:
        # Large finite fill (not -inf) keeps gradients finite for rows without negatives.
        scores = (beta * cos).masked_fill(pos, -1e4)
        n_neg = neg.sum(1, keepdim=True).clamp_min(1).to(logits.dtype)
        log_w = torch.where(
            neg, scores - torch.logsumexp(scores, 1, keepdim=True) + n_neg.log(), 0.0
        )
    log_denominator = torch.logsumexp(logits + log_w, dim=1)
    n_pos = pos.sum(1)
    pos_mean = (logits * pos).sum(1) / n_pos.clamp_min(1)
    return torch.where(n_pos > 0, log_denominator - pos_mean, 0.0)


def softmax_contrastive_loss_dense(
    a: Tensor,
    b: Tensor,
    scale: Tensor,
    groups_a: Tensor,
    groups_b: Tensor,
    hard_negative_beta: float = 0.0,
) -> SoftmaxParts:
    """Plain-autograd reference of `softmax_contrastive_loss`, plus hard-negative weighting.

    Holds several B x B matrices; used when `hard_negative_beta > 0` and in tests.
    """
    cos = a @ b.T
    logits = scale * cos
    pos = positive_mask(groups_a, groups_b)
    rows = _directional_nce(logits, cos, pos, hard_negative_beta)
    cols = _directional_nce(logits.T, cos.T, pos.T, hard_negative_beta)
    w_row = _row_weights(pos.sum(1), a.dtype)
    w_col = _row_weights(pos.sum(0), a.dtype)
    a_to_b = (w_row * rows).sum()
    b_to_a = (w_col * cols).sum()
    loss = 0.5 * (a_to_b + b_to_a)
    return SoftmaxParts(loss, a_to_b.detach(), b_to_a.detach(), int(pos.sum()))


def pairwise_distance(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """Distances between rows: `cosine` = 1 − cos(x_i, y_j), `euclidean` = ||x_i − y_j||₂.

    Shape: x: N x D, y: M x D -> N x M.
    """
    if kind == "cosine":
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).T
    if kind == "euclidean":
        return euclidean_distance(x, y)
    raise ValueError(f"distance must be 'cosine' or 'euclidean', got {kind!r}")


# Pairs whose squared distance is below this fraction of ||x||² + ||y||² are recomputed
# from x − y. The expansion's absolute error is about eps·(||x||² + ||y||²), so above the
# threshold its relative error on d² stays under eps / NEAR_FRACTION (1.2e-5 in float32);
# below it, cancellation takes over (40% at d = 1e-3 for unit vectors in float32).
NEAR_FRACTION = 1e-2
# Near pairs handled at once; bounds the temporary differences to NEAR_CHUNK x D floats
# (forward and backward), however many pairs are near.
NEAR_CHUNK = 4096


class _NearSquaredDistance(torch.autograd.Function):
    """||x_i − y_j||² for listed pairs (i, j), from the differences, chunk by chunk.

    Backward recomputes each chunk's differences instead of keeping them, so memory stays
    O(NEAR_CHUNK·D) even when every pair is near (e.g. a collapsed batch).
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        out = x.new_empty(rows.shape[0])
        for k0 in range(0, rows.shape[0], NEAR_CHUNK):
            i, j = rows[k0 : k0 + NEAR_CHUNK], cols[k0 : k0 + NEAR_CHUNK]
            out[k0 : k0 + NEAR_CHUNK] = (x[i] - y[j]).pow(2).sum(1)
        ctx.save_for_backward(x, y, rows, cols)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, rows, cols = ctx.saved_tensors
        grad_x, grad_y = torch.zeros_like(x), torch.zeros_like(y)
        for k0 in range(0, rows.shape[0], NEAR_CHUNK):
            i, j = rows[k0 : k0 + NEAR_CHUNK], cols[k0 : k0 + NEAR_CHUNK]
            g = 2.0 * grad[k0 : k0 + NEAR_CHUNK, None] * (x[i] - y[j])  # d(d²)/dx_i = 2(x_i − y_j)
            grad_x.index_add_(0, i, g)
            grad_y.index_add_(0, j, -g)
        return grad_x, grad_y, None, None


def euclidean_distance(x: Tensor, y: Tensor) -> Tensor:
    """||x_i − y_j||₂ for every pair, accurate in value and gradient for near-duplicates.

    Far pairs use the fast expansion √(||x||² + ||y||² − 2x·y) (one matmul); near pairs
    (see `NEAR_FRACTION`) are recomputed from the differences x_i − y_j in chunks, so the
    error no longer grows like ||x||²/d² and the gradient (x − y)/d is right. Identical
    rows give 0 with gradient 0.

    Shape: x: N x D, y: M x D -> N x M.
    """
    norms = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :]
    sq = norms - 2.0 * (x @ y.T)
    with torch.no_grad():
        near = (sq <= NEAR_FRACTION * norms).nonzero(as_tuple=True)
    if near[0].numel():
        sq = sq.index_put(near, _NearSquaredDistance.apply(x, y, *near))
    # Clamped before the square root so that the gradient of an exact 0 is 0, not inf·0.
    root = sq.clamp_min(torch.finfo(sq.dtype).tiny).sqrt()
    return torch.where(sq > 0, root, 0.0)
