"""One optimizer step's forward and backward, split into `accumulate` micro-batches.

A contrastive loss couples every row of the batch, so the accumulation mode decides which
negatives each row sees: `cached` (GradCache, `cached.py`) computes the loss
and gradients of the whole accumulated batch exactly; `naive` (`naive.py`)
keeps each micro-batch's own negatives, with exact per-unit terms. Every per-unit term
reports a sum and a count, and the step divides once by the global count
(`terms.py`). See docs/accumulation.md.
"""

from __future__ import annotations

from torch import nn

from contrastkit.losses.multitask import MultitaskLoss
from contrastkit.losses.result import LossOutput
from contrastkit.train.accumulation.cached import cached_step
from contrastkit.train.accumulation.context import StepContext, backward, split_batch
from contrastkit.train.accumulation.naive import naive_step


def single_step(
    model: nn.Module,
    criterion: MultitaskLoss,
    batch: dict,
    weights: dict[str, float],
    ctx: StepContext,
) -> LossOutput:
    """One ordinary forward / loss / backward (`accumulate: 1`)."""
    with ctx.autocast():
        output = ctx.forward(model, batch)
        loss = criterion(output, batch, weights)
    if ctx.on_loss is not None:
        ctx.on_loss(loss)
    backward(ctx.scale(loss.total))
    return loss


def accumulation_step(
    model: nn.Module,
    criterion: MultitaskLoss,
    batch: dict,
    weights: dict[str, float],
    ctx: StepContext,
    *,
    accumulate: int = 1,
    mode: str = "cached",
) -> LossOutput:
    """Forward and backward one optimizer step's batch, split into `accumulate` micro-batches."""
    if accumulate <= 1:
        return single_step(model, criterion, batch, weights, ctx)
    micro = split_batch(batch, accumulate)
    if mode == "naive":
        return naive_step(model, criterion, micro, weights, ctx)
    return cached_step(model, criterion, micro, batch, weights, ctx)
