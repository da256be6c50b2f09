"""One optimizer step after the backward pass: decide whether to take it, then take it.

The order inside `step` matters and is why this is one unit: the fp16 GradScaler must
unscale before clipping (clip the true gradients), the loss's bounded parameters are
clamped right after the update (before anything reads them), the gradients are cleared
before the schedule moves, and the EMA teacher trails the freshly updated weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from contrastkit.losses.bounds import clamp_loss_parameters_
from contrastkit.train.ema import EMA
from contrastkit.train.nonfinite import agree_bad, grads_finite
from contrastkit.train.optim.schedule import LrScheduler


class OptimizerStep:
    """Clip, step, clamp, schedule and EMA for one optimizer, with a non-finite gate.

    Args:
        optimizer / scheduler: what steps.
        model / criterion: the modules (EMA follows `model`; `criterion` holds bounded
            parameters such as the temperature).
        scaler: the fp16 GradScaler, or None.
        grad_clip: max global gradient norm, or None for no clipping.
        ema: the EMA teacher, or None.
        device: where the skip flag is all-reduced.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: LrScheduler,
        model: nn.Module,
        criterion: nn.Module,
        *,
        scaler: torch.amp.GradScaler | None,
        grad_clip: float | None,
        ema: EMA | None,
        device: torch.device,
    ) -> None:
        self.optimizer, self.scheduler = optimizer, scheduler
        self.model, self.criterion = model, criterion
        self.scaler, self.ema, self.device = scaler, ema, device
        self.max_norm = grad_clip if grad_clip is not None else math.inf

    def params(self) -> list[torch.Tensor]:
        """The parameters that received a gradient this step."""
        return [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]

    def is_bad(self, loss_value: float) -> bool:
        """A non-finite loss, or (without fp16) a non-finite gradient, on any rank."""
        bad = not math.isfinite(loss_value)
        # Under fp16 an overflowing gradient is the GradScaler's business: it skips that
        # step itself and lowers the scale; checking here would stop it from adapting.
        if not bad and self.scaler is None:
            bad = not grads_finite(self.params())
        return agree_bad(bad, self.device)

    def skip(self) -> None:
        """Drop the gradients; optimizer, scheduler and scaler stay exactly as they were."""
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> float:
        """Unscale (fp16), clip, step, clamp, advance the schedule; returns the pre-clip norm."""
        params = self.params()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
        norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_norm)) if params else 0.0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        # Bounds live on the parameters (a forward-pass clamp would freeze them above it).
        clamp_loss_parameters_(self.criterion)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)  # after the step: the teacher trails the weights
        return norm
