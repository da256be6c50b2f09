"""Sigmoid pairwise loss (SigLIP, Zhai et al. 2023), computed block by block.

L = −1/B Σ_i Σ_j log σ(z_ij (t·a_i·b_j + b)),  z_ij = +1 if rows i, j share a group, else −1.

Every pair is an independent binary problem, so the B x B logit matrix can be walked in
blocks of `block_size` rows x `block_size` columns: peak extra memory is O(block_size²),
never O(B²).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import ObjectiveConfig
from contrastkit.errors import ConfigError
from contrastkit.eval.stats import pos_neg_means
from contrastkit.losses.bounds import clamp_log_scale_
from contrastkit.losses.distributed import gather_no_grad, gather_with_grad
from contrastkit.losses.precision import full_precision
from contrastkit.losses.result import ContrastiveResult
from contrastkit.registry import LOSSES


class _BlockwiseSigmoidLoss(torch.autograd.Function):
    """Blockwise SigLIP loss with gradients accumulated block by block.

    When a gradient is needed, each block's dL/dlogits is formed right after its loss
    (while the block is in cache) and folded into dL/da, dL/db, dL/dt', dL/dbias; the
    backward pass only scales these by the incoming gradient. This costs three
    block matmuls per block (the minimum for forward + backward) instead of four for a
    recompute-in-backward scheme, and the B x B matrix never exists.
    """

    @staticmethod
    def forward(
        ctx,
        a: Tensor,
        b: Tensor,
        log_scale: Tensor,
        bias: Tensor,
        groups_a: Tensor,
        groups_b: Tensor,
        block_size: int,
        need_grad: bool,
    ) -> Tensor:
        t = float(log_scale.exp())
        n = a.shape[0]
        loss = a.new_zeros(())
        grad_a = torch.zeros_like(a) if need_grad else None
        grad_b = torch.zeros_like(b) if need_grad else None
        g_bias = a.new_zeros(())
        bias_t = bias.detach().to(a.dtype)
        for i0 in range(0, n, block_size):
            a_blk = a[i0 : i0 + block_size]
            g_blk = groups_a[i0 : i0 + block_size, None]
            for j0 in range(0, b.shape[0], block_size):
                b_blk = b[j0 : j0 + block_size]
                # Positives are few, so treat every pair as a negative (−log σ(−x) =
                # softplus(x), gradient σ(x)) and correct the positives sparsely:
                # −log σ(x) − softplus(x) = −x, and their gradient is σ(x) − 1.
                pos = (g_blk == groups_b[None, j0 : j0 + block_size]).nonzero(as_tuple=True)
                x = torch.addmm(bias_t, a_blk, b_blk.T, alpha=t)
                loss += F.softplus(x, threshold=40.0).sum() - x[pos].sum()
                if grad_a is not None and grad_b is not None:  # need_grad
                    grad = torch.sigmoid(x)
                    grad[pos] -= 1.0
                    g_bias += grad.sum()
                    grad_a[i0 : i0 + block_size].addmm_(grad, b_blk)
                    grad_b[j0 : j0 + block_size].addmm_(grad.T, a_blk)
        ctx.need_grad = need_grad
        if grad_a is not None and grad_b is not None:  # need_grad
            # dx/dt' = t·a_i·b_j, so dL/dt' = t·Σ_i a_i·(Σ_j G_ij b_j): the unscaled
            # dL/da already holds Σ_j G_ij b_j (no extra pass over the blocks). All terms
            # carry the 1/B of the mean over rows.
            g_log_scale = t * (a * grad_a).sum() / n
            ctx.save_for_backward(grad_a.mul_(t / n), grad_b.mul_(t / n), g_log_scale, g_bias / n)
        return loss / n

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if not ctx.need_grad:
            raise RuntimeError("blockwise SigLIP loss was computed without gradient tracking")
        grad_a, grad_b, g_log_scale, g_bias = ctx.saved_tensors
        return (
            grad_a * grad_out,
            grad_b * grad_out,
            g_log_scale * grad_out,
            g_bias * grad_out,
            None,
            None,
            None,
            None,
        )


def sigmoid_loss_blockwise(
    a: Tensor,
    b: Tensor,
    log_scale: Tensor,
    bias: Tensor,
    groups_a: Tensor,
    groups_b: Tensor,
    block_size: int = 1024,
) -> Tensor:
    """SigLIP loss without materialising B x B; identical to `sigmoid_loss_dense`.

    Shape:
        a: B_a x D, b: B_b x D, log_scale / bias: 0-dim, groups_*: B_*.
    """
    if block_size < 1:
        raise ConfigError(f"siglip block_size must be >= 1, got {block_size}")
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (a, b, log_scale, bias))
    return _BlockwiseSigmoidLoss.apply(
        a, b, log_scale, bias, groups_a, groups_b, block_size, need_grad
    )


def sigmoid_loss_dense(
    a: Tensor, b: Tensor, log_scale: Tensor, bias: Tensor, groups_a: Tensor, groups_b: Tensor
) -> Tensor:
    """Reference SigLIP loss with a full B x B matrix (plain autograd)."""
    logits = log_scale.exp() * a @ b.T + bias
    z = torch.where(groups_a[:, None] == groups_b[None, :], 1.0, -1.0).to(a.dtype)
    return -F.logsigmoid(z * logits).sum() / a.shape[0]


class SiglipLoss(nn.Module):
    """SigLIP sigmoid loss with learnable log-scale t' and bias b, multi-positive by group.

    Defaults follow Zhai et al. 2023: t' = log 10 (scale 10) and b = −10, so that at
    initialisation the many negatives (z = −1) already have small loss and training is not
    dominated by pushing them apart.

    Args:
        init_logit_scale: t' (the scale is exp(t')).
        init_logit_bias: b.
        learnable: learn t' and b (else buffers).
        block_size: rows/columns per block; bounds peak memory to O(block_size²).
        max_logit_scale: ceiling of the scale exp(t'), enforced on t' itself (clamped to
            [0, ln max_logit_scale]) by `clamp_parameters_` after each optimiser step;
            None (default) leaves t' free, as in the paper (pretrained SigLIP models sit
            above 100, e.g. t ≈ 112).
    """

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_logit_bias: float = -10.0,
        learnable: bool = True,
        block_size: int = 1024,
        max_logit_scale: float | None = None,
    ) -> None:
        super().__init__()
        if block_size < 1:
            raise ConfigError(f"siglip block_size must be >= 1, got {block_size}")
        if max_logit_scale is not None and init_logit_scale > math.log(max_logit_scale):
            raise ConfigError(
                f"siglip init_logit_scale {init_logit_scale:.4g} is above ln max_logit_scale "
                f"= {math.log(max_logit_scale):.4g}"
            )
        scale, bias = torch.tensor(float(init_logit_scale)), torch.tensor(float(init_logit_bias))
        if learnable:
            self.logit_scale = nn.Parameter(scale)
            self.logit_bias = nn.Parameter(bias)
        else:
            self.register_buffer("logit_scale", scale)
            self.register_buffer("logit_bias", bias)
        self.block_size = block_size
        self.max_logit_scale = max_logit_scale

    def clamp_parameters_(self) -> None:
        """Keep t' in [ln 1, ln max_logit_scale] when a ceiling is set (call after each
        optimiser step)."""
        if self.max_logit_scale is not None:
            clamp_log_scale_(self.logit_scale, self.max_logit_scale)

    @full_precision
    def forward(
        self,
        a: Tensor,
        b: Tensor,
        group_ids: Tensor,
        attributes: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> ContrastiveResult:
        """Loss between two L2-normalised embedding sets (global batch under DDP).

        Shape:
            a, b: B x D; group_ids: B.
        """
        del attributes, labels
        if b is None:
            raise ConfigError("siglip loss needs two towers (a and b embeddings)")
        a, b = gather_with_grad(a), gather_with_grad(b)
        groups = gather_no_grad(group_ids)
        log_scale = self.logit_scale.to(a.dtype)
        bias = self.logit_bias.to(a.dtype)
        loss = sigmoid_loss_blockwise(a, b, log_scale, bias, groups, groups, self.block_size)
        pos_sim, neg_sim = pos_neg_means(a, b, groups, groups)
        _, counts = torch.unique(groups, return_counts=True)
        n_pos = int((counts * counts).sum())  # a group of k rows has k² positive pairs
        return ContrastiveResult(
            loss=loss,
            logit_scale=log_scale.detach().exp(),
            logit_bias=bias.detach(),
            num_positives=n_pos,
            stats={"pos_sim": pos_sim, "neg_sim": neg_sim},
        )


@LOSSES.register("siglip")
class SiglipObjective(ObjectiveConfig):
    """`type: siglip`: sigmoid pairwise loss (Zhai et al. 2023), computed in blocks."""

    type: Literal["siglip"] = Field(
        "siglip", description="siglip: pairwise sigmoid loss (Zhai et al. 2023), in blocks"
    )
    init_logit_scale: float = Field(math.log(10.0), description="t' with scale t = exp(t')")
    init_logit_bias: float = Field(
        -10.0, description="initial bias b: -10 matches the prior of 1 positive per row"
    )
    learnable: bool = Field(True, description="learn the scale t' and the bias b with the model")
    block_size: int = Field(1024, ge=1, description="rows/cols per block; bounds peak memory")
    max_logit_scale: float | None = Field(
        None, ge=1.0, description="ceiling of exp(t'), enforced on t' itself; None = free"
    )

    @model_validator(mode="after")
    def _two_towers(self) -> SiglipObjective:
        if len(self.towers) != 2:
            raise ValueError("siglip objective needs exactly two towers")
        if self.max_logit_scale is not None and self.init_logit_scale > math.log(
            self.max_logit_scale
        ):
            raise ValueError(
                f"init_logit_scale {self.init_logit_scale:.4g} is above ln max_logit_scale"
                f" = {math.log(self.max_logit_scale):.4g}"
            )
        return self

    @override
    def build(self) -> SiglipLoss:
        return SiglipLoss(
            self.init_logit_scale,
            self.init_logit_bias,
            self.learnable,
            self.block_size,
            self.max_logit_scale,
        )
