"""Gradient accumulation that enlarges the negative set: cached features (GradCache).

Gao, Zhang, Han & Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup". A contrastive loss couples every row of the batch, so summing the losses of
micro-batches (naive accumulation) is *not* the loss of the big batch: each micro-batch
only sees its own negatives. Cached accumulation computes the big-batch loss exactly:

1. forward every micro-batch under `no_grad`, keep the detached embeddings (and the RNG
   state before each forward);
2. concatenate them into leaf tensors, compute the contrastive loss over the whole
   accumulated batch and back-propagate to get dL/d(embedding) (and the gradients of the
   loss's own temperature / bias);
3. replay each micro-batch's forward with the RNG rewound (same dropout / masking draws)
   and back-propagate `sum(embedding * cached_grad)` plus that micro-batch's per-unit
   auxiliary terms as `sum · W / C`, C being the term's count over the whole step (all
   micro-batches, all ranks; known from step 1).

By the chain rule, step 3 deposits exactly dL/dθ. Cost: one extra forward per micro-batch;
memory: one micro-batch's activations plus B x E embeddings. Distillation couples rows
like a contrastive objective, so it is computed in step 2 from the cached teacher
embeddings. Naive accumulation keeps each micro-batch's own negatives, but its per-unit
terms are exact too (one no-grad counting pass when one of them is weighted). See
docs/accumulation.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.losses.multitask import MultitaskLoss, teacher_embeddings
from contrastkit.losses.reduction import (
    add_counts,
    add_totals,
    global_counts,
    global_means,
    share_of_mean,
)
from contrastkit.losses.result import LossOutput, TermSum, result_stats
from contrastkit.models.outputs import ModelOutput
from contrastkit.train.rng import capture_rng, restore_rng

ContextFn = Callable[[], contextlib.AbstractContextManager]


def _null() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _identity(t: Tensor) -> Tensor:
    return t


@dataclass
class StepContext:
    """How a step runs: AMP, loss scaling, DDP sync and the engine's event hooks.

    Attributes:
        autocast: returns the autocast context (AMP) or a null context.
        scale: GradScaler.scale for fp16, identity otherwise.
        no_sync: DDP `model.no_sync` (skips the gradient all-reduce) or a null context.
        add_teacher: adds the teacher's embeddings to a model output before the loss
            (distillation), or None.
        on_forward: called after every forward that builds a graph (AFTER_FORWARD).
        on_loss: called once with the step's LossOutput (AFTER_LOSS).
        replay_rng: rewind the RNG before replaying a micro-batch (only off in tests).
    """

    autocast: ContextFn = _null
    scale: Callable[[Tensor], Tensor] = _identity
    no_sync: ContextFn = _null
    add_teacher: Callable[[ModelOutput, dict], ModelOutput] | None = None
    on_forward: Callable[[ModelOutput, dict], None] | None = None
    on_loss: Callable[[LossOutput], None] | None = None
    replay_rng: bool = True

    def forward(self, model: nn.Module, batch: dict) -> ModelOutput:
        """The model's output for `batch`, with `add_teacher` and `on_forward` applied."""
        output = model(batch)
        if self.add_teacher is not None:
            output = self.add_teacher(output, batch)
        if self.on_forward is not None:
            self.on_forward(output, batch)
        return output


def batch_size_of(batch: dict) -> int:
    """Rows in a batch (from `group_ids`, else the first tensor)."""
    if "group_ids" in batch:
        return len(batch["group_ids"])
    return next(len(v) for v in batch.values() if isinstance(v, Tensor | list))


def split_batch(batch: dict, parts: int) -> list[dict]:
    """Split a batch into `parts` consecutive micro-batches (sizes differ by at most 1).

    Tensors and lists with one entry per row are sliced; anything else is shared.
    """
    size = batch_size_of(batch)
    parts = min(parts, size)
    bounds = [i * size // parts for i in range(parts + 1)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        micro = {}
        for key, value in batch.items():
            rowwise = (
                isinstance(value, Tensor | list)
                and len(value) == size
                and (not isinstance(value, Tensor) or value.ndim > 0)
            )
            micro[key] = value[lo:hi] if rowwise else value
        out.append(micro)
    return out


def weighted_sum(terms: dict[str, Tensor], weights: dict[str, float]) -> Tensor | None:
    """Sum of weight x term over terms with a non-zero weight (None if there are none)."""
    parts = [weights[k] * v for k, v in terms.items() if weights.get(k, 0.0) != 0.0]
    return torch.stack([p.reshape(()) for p in parts]).sum() if parts else None


def _backward(loss: Tensor | None) -> None:
    if loss is not None and loss.requires_grad:
        loss.backward()


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
    _backward(ctx.scale(loss.total))
    return loss


def _weighted_sums(
    sums: dict[str, TermSum], counts: dict[str, Tensor], weights: dict[str, float]
) -> Tensor | None:
    """This micro-batch's weighted part of every weighted per-unit term (total · W / C)."""
    return weighted_sum(
        {k: share_of_mean(v, counts[k]) for k, v in sums.items() if weights.get(k, 0.0)},
        weights,
    )


def _needs_counts(criterion: MultitaskLoss, weights: dict[str, float]) -> bool:
    """Whether a weighted per-unit term needs the step's counts before any backward."""
    names = getattr(criterion, "auxiliary_names", ())
    return any(weights.get(name, 0.0) != 0.0 for name in names)


def _reported_sums(pieces: Sequence[dict[str, TermSum]]) -> dict[str, Tensor]:
    """Per-unit terms of the whole step, for the log: Σ totals / Σ counts (all ranks)."""
    return global_means(add_totals(pieces), global_counts(add_counts(pieces)))


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
        sync = ctx.no_sync if i < len(micro) - 1 else _null
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
                aux_total = _weighted_sums(sums, counts, weights)
                parts += [] if aux_total is None else [aux_total]
            _backward(ctx.scale(torch.stack(parts).sum()) if parts else None)
        coupled.append({k: v.detach() for k, v in c_terms.items()})
        pieces.append(sums)
        shares.append(share)
    if rng_states is not None:
        restore_rng(rng_after)
    terms: dict[str, Tensor] = {}
    for c_terms, share in zip(coupled, shares, strict=True):
        for k, v in c_terms.items():
            terms[k] = terms[k] + share * v if k in terms else share * v
    terms.update(_reported_sums(pieces))
    merged = _loss_output(terms, weights, results)
    if ctx.on_loss is not None:
        ctx.on_loss(merged)
    return merged


def _loss_output(terms: dict[str, Tensor], weights: dict[str, float], results: dict) -> LossOutput:
    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    return LossOutput(
        total=torch.as_tensor(total),
        terms=terms,
        weights=dict(weights),
        stats=result_stats(results),
        results=results,
    )


def _leaf(t: Tensor) -> Tensor:
    """Detached embedding as a leaf; half-precision AMP outputs are promoted to float32."""
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.detach().requires_grad_(True)


def cached_step(
    model: nn.Module,
    criterion: MultitaskLoss,
    micro: Sequence[dict],
    full_batch: dict,
    weights: dict[str, float],
    ctx: StepContext,
) -> LossOutput:
    """Cached-feature accumulation: exact loss and gradients of the whole accumulated batch.

    Args:
        micro: the micro-batches, in order; concatenated they are `full_batch`.
        full_batch: the whole step batch (the loss reads `group_ids`, `label`, `attributes`).
        weights: term name -> weight at this step.
    """
    rng_states, cached, teachers, pieces = [], [], [], []
    with torch.no_grad():
        for mb in micro:
            rng_states.append(capture_rng())
            with ctx.autocast():
                output = model(mb)
                if ctx.add_teacher is not None:
                    output = ctx.add_teacher(output, mb)
                cached.append({k: v.detach() for k, v in output.embeddings.items()})
                teachers.append(teacher_embeddings(output))
                pieces.append(criterion.auxiliary(output, mb))
    rng_after = capture_rng()
    counts = global_counts(add_counts(pieces))

    leaves = {t: _leaf(torch.cat([c[t] for c in cached])) for t in cached[0]}
    teacher = {t: torch.cat([c[t] for c in teachers]) for t in teachers[0]}
    with ctx.autocast():
        c_terms, results = criterion.contrastive(leaves, full_batch, teacher)
    contrastive = weighted_sum(c_terms, weights)
    _backward(None if contrastive is None else ctx.scale(contrastive))
    grads = {t: leaf.grad for t, leaf in leaves.items() if leaf.grad is not None}

    sizes = [batch_size_of(mb) for mb in micro]
    start, replayed = 0, []
    for i, (mb, size) in enumerate(zip(micro, sizes, strict=True)):
        if ctx.replay_rng:
            restore_rng(rng_states[i])
        sync = ctx.no_sync if i < len(micro) - 1 else _null
        with sync():
            with ctx.autocast():
                output = ctx.forward(model, mb)
                sums = criterion.auxiliary(output, mb)
            surrogate = [
                (output.embeddings[t].to(g.dtype) * g[start : start + size]).sum()
                for t, g in grads.items()
            ]
            aux_total = _weighted_sums(sums, counts, weights)
            parts = surrogate + ([ctx.scale(aux_total)] if aux_total is not None else [])
            _backward(torch.stack(parts).sum() if parts else None)
        replayed.append(sums)
        start += size
    restore_rng(rng_after)

    terms = {k: v.detach() for k, v in c_terms.items()}
    terms.update(_reported_sums(replayed))
    loss = _loss_output(terms, weights, results)
    if ctx.on_loss is not None:
        ctx.on_loss(loss)
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
