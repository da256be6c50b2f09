"""Temperature bounds enforced on the parameter itself, after every optimiser step.

A clamp inside the forward pass (`exp(logit_scale).clamp(max=100)`) has zero gradient
above the ceiling: once AdamW's momentum carries `logit_scale` past ln(max), no data can
bring it back, and the logged (clamped) scale hides the drift. CLIP and open_clip instead
clamp the *parameter* in place after each step, so it rests at the ceiling with a live
gradient. Every loss with such a parameter exposes `clamp_parameters_()`; the engine calls
`clamp_loss_parameters_(criterion)` once per optimiser step, whatever the accumulation mode
or precision.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# Floor of the scale exp(logit_scale): temperature 1 (open_clip clamps to [ln 1, ln 100]).
# A softmax over cosines at τ > 1 is so flat that the loss barely moves, and the floor keeps
# exp() far from underflowing to 0 (the 1/scale of the logged temperature stays finite).
MIN_LOGIT_SCALE = 1.0


def log_scale_bounds(max_logit_scale: float) -> tuple[float, float]:
    """[ln MIN_LOGIT_SCALE, ln max_logit_scale]: where `logit_scale` may live."""
    return math.log(MIN_LOGIT_SCALE), math.log(max_logit_scale)


@torch.no_grad()
def clamp_log_scale_(log_scale: Tensor, max_logit_scale: float) -> None:
    """Clamp a log-space scale parameter (or buffer) in place to `log_scale_bounds`."""
    low, high = log_scale_bounds(max_logit_scale)
    log_scale.clamp_(low, high)


def clamp_loss_parameters_(criterion: nn.Module) -> None:
    """Apply `criterion.clamp_parameters_()` when the criterion defines it (the multitask
    loss does; a criterion without bounded parameters is left untouched)."""
    clamp = getattr(criterion, "clamp_parameters_", None)
    if callable(clamp):
        clamp()
