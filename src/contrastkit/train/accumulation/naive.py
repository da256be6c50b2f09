"""Naive gradient accumulation: each micro-batch keeps its own negatives.

Summing micro-batch losses is *not* the loss of the big batch for a contrastive objective
(each micro-batch only sees its own negatives), but its per-unit terms are exact: one
no-grad counting pass, when one of them is weighted, gives the step's global counts, and
every micro-batch back-propagates `sum · W / C`. See docs/accumulation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.losses.multitask import MultitaskLoss, teacher_embeddings
from contrastkit.losses.reduction import add_counts, global_counts
from contrastkit.losses.result import LossOutput
from contrastkit.train.accumulation.context import (
    StepContext,
    backward,
    batch_size_of,
    null_context,
)
from contrastkit.train.accumulation.terms import (
    loss_output,
    reported_sums,
    weighted_sum,
    weighted_sums,
)
from contrastkit.train.rng import capture_rng, restore_rng


def _needs_counts(criterion: MultitaskLoss, weights: dict[str, float]) -> bool:
    """Whether a weighted per-unit term needs the step's counts before any backward."""
    names = getattr(criterion, "auxiliary_names", ())
    return any(weights.get(name, 0.0) != 0.0 for name in names)


def _counting_pass(
    model: nn.Module, criterion: MultitaskLoss, micro: Sequence[dict], ctx: StepContext
) -> tuple[list, dict[str, Tensor]]:
    """No-grad forward of every micro-batch: RNG state before each, and the per-unit
    terms' global counts (the denominators every micro-batch's backward needs)."""
    rng_states, pieces = [], []
    with torch.no_grad():
        for mb in micro:
            rng_states.append(capture_rng())
            with ctx.autocast():
                pieces.append(criterion.auxiliary(model(mb), mb))
    return rng_states, global_counts(add_counts(pieces))


def naive_step(
    model: nn.Module,
    criterion: MultitaskLoss,
    micro: Sequence[dict],
    weights: dict[str, float],
    ctx: StepContext,
) -> LossOutput:
    """Per micro-batch: row-coupling terms (own negatives) x its share of rows, per-unit
    terms as `sum · W / C` with the step's global count C (exact, as for the full batch)."""
    total_rows = sum(batch_size_of(mb) for mb in micro)
    rng_states: list | None = None
    counts: dict[str, Tensor] = {}
    if _needs_counts(criterion, weights):
        rng_states, counts = _counting_pass(model, criterion, micro, ctx)
    rng_after = capture_rng()
    coupled, pieces, shares = [], [], []
    results: dict[str, Any] = {}
    for i, mb in enumerate(micro):
        share = batch_size_of(mb) / total_rows
        if rng_states is not None and ctx.replay_rng:
            restore_rng(rng_states[i])
        sync = ctx.no_sync if i < len(micro) - 1 else null_context
        with sync():
            with ctx.autocast():
                output = ctx.forward(model, mb)
                c_terms, results = criterion.contrastive(
                    output.embeddings, mb, teacher_embeddings(output)
                )
                sums = criterion.auxiliary(output, mb)
            c_total = weighted_sum(c_terms, weights)
            parts = [] if c_total is None else [c_total * share]
            if counts:
                aux_total = weighted_sums(sums, counts, weights)
                parts += [] if aux_total is None else [aux_total]
            backward(ctx.scale(torch.stack(parts).sum()) if parts else None)
        coupled.append({k: v.detach() for k, v in c_terms.items()})
        pieces.append(sums)
        shares.append(share)
    if rng_states is not None:
        restore_rng(rng_after)
    terms: dict[str, Tensor] = {}
    for c_terms, share in zip(coupled, shares, strict=True):
        for k, v in c_terms.items():
            terms[k] = terms[k] + share * v if k in terms else share * v
    terms.update(reported_sums(pieces))
    merged = loss_output(terms, weights, results)
    if ctx.on_loss is not None:
        ctx.on_loss(merged)
    return merged
