"""Softmax contrastive loss (CLIP, Radford et al. 2021 / InfoNCE, van den Oord et al. 2018)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import ObjectiveConfig
from contrastkit.errors import ConfigError
from contrastkit.eval.stats import pos_neg_means
from contrastkit.losses.bounds import clamp_log_scale_
from contrastkit.losses.distributed import gather_no_grad, gather_with_grad
from contrastkit.losses.functional import (
    softmax_contrastive_loss,
    softmax_contrastive_loss_dense,
)
from contrastkit.losses.precision import full_precision
from contrastkit.losses.result import ContrastiveResult
from contrastkit.registry import LOSSES


class ClipLoss(nn.Module):
    """Symmetric, multi-positive softmax contrastive loss with a learnable temperature.

    The temperature is stored as `logit_scale` = log(1/τ) (CLIP's parametrisation: the
    optimiser works in log space, so it can never turn negative), initialised to
    log(1/0.07). The forward pass uses exp(logit_scale) as it is (always differentiable);
    `clamp_parameters_`, called after every optimiser step, keeps the parameter in
    [ln 1, ln max_logit_scale] (CLIP caps the scale at 100) as CLIP and open_clip do.

    Rows sharing a group id are all positives; the target of a row is uniform over its
    positives (SupCon-style). With unique groups this is exactly CLIP's loss.

    Args:
        init_temperature: τ₀; 0.07 as in CLIP. A τ near 1 or above makes the softmax so flat
            that the loss barely moves.
        learnable: learn the temperature (else `logit_scale` is a buffer).
        max_logit_scale: ceiling of exp(logit_scale), enforced on the parameter.
        hard_negative_beta: 0 disables; > 0 re-weights negatives by exp(β·cos) normalised
            over each row's negatives (Robinson et al. 2021, "Contrastive Learning with
            Hard Negative Samples"). Uses a dense path with several B x B matrices.
    """

    def __init__(
        self,
        init_temperature: float = 0.07,
        learnable: bool = True,
        max_logit_scale: float = 100.0,
        hard_negative_beta: float = 0.0,
    ) -> None:
        super().__init__()
        if init_temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {init_temperature}")
        if 1.0 / init_temperature > max_logit_scale:
            raise ConfigError(
                f"temperature {init_temperature} gives logit scale {1 / init_temperature:.4g} "
                f"above max_logit_scale {max_logit_scale}"
            )
        if hard_negative_beta < 0:
            raise ConfigError(f"hard_negative_beta must be >= 0, got {hard_negative_beta}")
        init = torch.tensor(math.log(1.0 / init_temperature))
        if learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)
        self.max_logit_scale = max_logit_scale
        self.hard_negative_beta = hard_negative_beta

    def scale(self) -> Tensor:
        """exp(logit_scale), the inverse temperature (the live, logged value)."""
        return self.logit_scale.exp()

    def clamp_parameters_(self) -> None:
        """Keep `logit_scale` in [ln 1, ln max_logit_scale] (call after each optimiser step)."""
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
        """Loss between two L2-normalised embedding sets whose row i belongs to group_ids[i].

        Under an initialised process group the embeddings and ids of all ranks are
        gathered first (global negatives).

        Shape:
            a, b: B x D; group_ids: B.
        """
        del attributes, labels  # accepted for a uniform objective signature
        if b is None:
            raise ConfigError("clip loss needs two towers (a and b embeddings)")
        a, b = gather_with_grad(a), gather_with_grad(b)
        groups = gather_no_grad(group_ids)
        scale = self.scale().to(a.dtype)
        if self.hard_negative_beta > 0:
            parts = softmax_contrastive_loss_dense(
                a, b, scale, groups, groups, self.hard_negative_beta
            )
        else:
            parts = softmax_contrastive_loss(a, b, scale, groups, groups)
        pos_sim, neg_sim = pos_neg_means(a, b, groups, groups)
        return ContrastiveResult(
            loss=parts.loss,
            a_to_b=parts.a_to_b,
            b_to_a=parts.b_to_a,
            logit_scale=scale.detach(),
            num_positives=parts.num_positives,
            stats={
                "pos_sim": pos_sim,
                "neg_sim": neg_sim,
                "temperature": 1.0 / float(scale.detach()),
            },
        )


@LOSSES.register("clip")
class ClipObjective(ObjectiveConfig):
    """`type: clip`: softmax (InfoNCE) loss, symmetric, multi-positive over group ids."""

    type: Literal["clip"] = Field(
        "clip", description="clip: softmax InfoNCE, symmetric, multi-positive over groups"
    )
    # No upper bound here on purpose: tau = 10 is the classic silent failure, and the
    # doctor (temperature_out_of_range) must be able to see and explain it.
    temperature: float = Field(0.07, gt=0.0, description="initial temperature tau (scale = 1/tau)")
    learnable_temperature: bool = Field(
        True, description="learn the temperature (logit scale) with the model"
    )
    max_logit_scale: float = Field(100.0, ge=1.0, description="ceiling of exp(logit_scale)")
    hard_negative_beta: float = Field(
        0.0, ge=0.0, description="0 = off; >0 up-weights hard negatives"
    )

    @model_validator(mode="after")
    def _two_towers(self) -> ClipObjective:
        if len(self.towers) != 2:
            raise ValueError("clip objective needs exactly two towers")
        if 1.0 / self.temperature > self.max_logit_scale:
            raise ValueError(
                f"temperature {self.temperature} gives logit scale {1 / self.temperature:.1f} "
                f"above max_logit_scale {self.max_logit_scale}"
            )
        return self

    @override
    def build(self) -> ClipLoss:
        return ClipLoss(
            self.temperature,
            self.learnable_temperature,
            self.max_logit_scale,
            self.hard_negative_beta,
        )
