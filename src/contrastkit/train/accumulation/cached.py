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
embeddings. See docs/accumulation.md.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    backward(None if contrastive is None else ctx.scale(contrastive))
    grads = {t: leaf.grad for t, leaf in leaves.items() if leaf.grad is not None}

    sizes = [batch_size_of(mb) for mb in micro]
    start, replayed = 0, []
    for i, (mb, size) in enumerate(zip(micro, sizes, strict=True)):
        if ctx.replay_rng:
            restore_rng(rng_states[i])
        sync = ctx.no_sync if i < len(micro) - 1 else null_context
        with sync():
            with ctx.autocast():
                output = ctx.forward(model, mb)
                sums = criterion.auxiliary(output, mb)
            surrogate = [
                (output.embeddings[t].to(g.dtype) * g[start : start + size]).sum()
                for t, g in grads.items()
            ]
            aux_total = weighted_sums(sums, counts, weights)
            parts = surrogate + ([ctx.scale(aux_total)] if aux_total is not None else [])
            backward(torch.stack(parts).sum() if parts else None)
        replayed.append(sums)
        start += size
    restore_rng(rng_after)

    terms = {k: v.detach() for k, v in c_terms.items()}
    terms.update(reported_sums(replayed))
    loss = loss_output(terms, weights, results)
    if ctx.on_loss is not None:
        ctx.on_loss(loss)
    return loss
