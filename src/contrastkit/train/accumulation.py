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
   and back-propagate `sum(embedding * cached_grad)` plus that micro-batch's auxiliary
   terms (weighted by its share of the rows).

By the chain rule, step 3 deposits exactly dL/dθ. Cost: one extra forward per micro-batch;
memory: one micro-batch's activations plus B x E embeddings. See docs/accumulation.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from contrastkit.losses.result import LossOutput, result_stats
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
        prepare: adds things to a model output before the loss (e.g. EMA teacher embeddings).
        on_forward: called after every forward that builds a graph (AFTER_FORWARD).
        on_loss: called once with the step's LossOutput (AFTER_LOSS).
        replay_rng: rewind the RNG before replaying a micro-batch (only off in tests).
    """

    autocast: ContextFn = _null
    scale: Callable[[Tensor], Tensor] = _identity
    no_sync: ContextFn = _null
    prepare: Callable[[ModelOutput, dict], ModelOutput] | None = None
    on_forward: Callable[[ModelOutput, dict], None] | None = None
    on_loss: Callable[[LossOutput], None] | None = None
    replay_rng: bool = True

    def forward(self, model: nn.Module, batch: dict) -> ModelOutput:
        output = model(batch)
        if self.prepare is not None:
            output = self.prepare(output, batch)
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
    model: nn.Module, criterion: nn.Module, batch: dict, weights: dict[str, float], ctx: StepContext
) -> LossOutput:
    """One ordinary forward / loss / backward (`accumulate: 1`)."""
    with ctx.autocast():
        output = ctx.forward(model, batch)
        loss = criterion(output, batch, weights)
    if ctx.on_loss is not None:
        ctx.on_loss(loss)
    _backward(ctx.scale(loss.total))
    return loss


def naive_step(
    model: nn.Module,
    criterion: nn.Module,
    micro: Sequence[dict],
    weights: dict[str, float],
    ctx: StepContext,
) -> LossOutput:
    """Per micro-batch full loss x its share of rows, backward each (own negatives only)."""
    total_rows = sum(batch_size_of(mb) for mb in micro)
    losses, shares = [], []
    for i, mb in enumerate(micro):
        share = batch_size_of(mb) / total_rows
        sync = ctx.no_sync if i < len(micro) - 1 else _null
        with sync():
            with ctx.autocast():
                output = ctx.forward(model, mb)
                loss = criterion(output, mb, weights)
            _backward(ctx.scale(loss.total * share))
        losses.append(loss)
        shares.append(share)
    merged = _merge(losses, shares, weights)
    if ctx.on_loss is not None:
        ctx.on_loss(merged)
    return merged


def _merge(
    losses: Sequence[LossOutput], shares: Sequence[float], weights: dict[str, float]
) -> LossOutput:
    terms: dict[str, Tensor] = {}
    stats: dict[str, float] = {}
    for loss, share in zip(losses, shares, strict=True):
        for k, v in loss.terms.items():
            terms[k] = terms.get(k, 0.0) + share * v.detach()
        for k, v in loss.stats.items():
            stats[k] = stats.get(k, 0.0) + share * float(v)
    total = sum(share * loss.total.detach() for loss, share in zip(losses, shares, strict=True))
    return LossOutput(
        total=total, terms=terms, weights=dict(weights), stats=stats, results=losses[-1].results
    )


def _leaf(t: Tensor) -> Tensor:
    """Detached embedding as a leaf; half-precision AMP outputs are promoted to float32."""
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.detach().requires_grad_(True)


def cached_step(
    model: nn.Module,
    criterion: nn.Module,
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
    rng_states, cached = [], []
    with torch.no_grad():
        for mb in micro:
            rng_states.append(capture_rng())
            with ctx.autocast():
                cached.append({k: v.detach() for k, v in model(mb).embeddings.items()})
    rng_after = capture_rng()

    leaves = {t: _leaf(torch.cat([c[t] for c in cached])) for t in cached[0]}
    with ctx.autocast():
        c_terms, results = criterion.contrastive(leaves, full_batch)
    contrastive = weighted_sum(c_terms, weights)
    _backward(None if contrastive is None else ctx.scale(contrastive))
    grads = {t: leaf.grad for t, leaf in leaves.items() if leaf.grad is not None}

    sizes = [batch_size_of(mb) for mb in micro]
    total_rows, start = sum(sizes), 0
    aux_terms: dict[str, Tensor] = {}
    for i, (mb, size) in enumerate(zip(micro, sizes, strict=True)):
        if ctx.replay_rng:
            restore_rng(rng_states[i])
        sync = ctx.no_sync if i < len(micro) - 1 else _null
        with sync():
            with ctx.autocast():
                output = ctx.forward(model, mb)
                aux = criterion.auxiliary(output, mb)
            share = size / total_rows
            surrogate = [
                (output.embeddings[t].to(g.dtype) * g[start : start + size]).sum()
                for t, g in grads.items()
            ]
            aux_total = weighted_sum(aux, weights)
            parts = surrogate + ([ctx.scale(aux_total * share)] if aux_total is not None else [])
            _backward(torch.stack(parts).sum() if parts else None)
        for k, v in aux.items():
            aux_terms[k] = aux_terms.get(k, 0.0) + share * v.detach()
        start += size
    restore_rng(rng_after)

    terms = {**{k: v.detach() for k, v in c_terms.items()}, **aux_terms}
    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    loss = LossOutput(
        total=torch.as_tensor(total),
        terms=terms,
        weights=dict(weights),
        stats=result_stats(results),
        results=results,
    )
    if ctx.on_loss is not None:
        ctx.on_loss(loss)
    return loss


def accumulation_step(
    model: nn.Module,
    criterion: nn.Module,
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
