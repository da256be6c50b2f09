"""Global negatives: gather embeddings (with gradient) and ids from every rank.

Every contrastive loss in contrastkit calls `gather_with_grad` / `gather_no_grad` when a
process group with more than one rank is initialised, so each rank computes the loss of
the *global* batch (rows concatenated in rank order) and negatives come from all ranks.

Gradient scaling: every rank computes the same scalar loss L on the global batch. In
`gather_with_grad`'s backward the incoming gradient (dL/d global embeddings, identical on
every rank) is all-reduced with SUM and the local slice is returned, so rank r's local
embeddings receive W * dL/d(local slice) (W = world size). DistributedDataParallel then
*averages* parameter gradients over the W ranks, which divides by W again: the optimiser
sees exactly the single-process gradient of L on the concatenated batch. Parameters that
live in the loss (e.g. `logit_scale`) get dL/dparam on every rank; the average of W equal
values is the same value. The test `tests/losses/test_distributed.py` checks both.
"""

from __future__ import annotations

from typing import overload

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world_size); (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_distributed() -> bool:
    """True when the losses must gather across ranks (initialised group, world size > 1)."""
    return world()[1] > 1


def _all_gather_padded(t: Tensor) -> tuple[Tensor, list[int]]:
    """All-gather tensors whose first dimension may differ between ranks.

    Rows are padded to the largest local size, gathered, then trimmed, so ranks may hold
    uneven micro-batches (the last batch of an epoch without `drop_last`).
    """
    _, size = world()
    n = torch.tensor([t.shape[0]], dtype=torch.long, device=t.device)
    sizes_t = [torch.zeros_like(n) for _ in range(size)]
    dist.all_gather(sizes_t, n)
    sizes = [int(s.item()) for s in sizes_t]
    longest = max(sizes)
    send = t.contiguous()
    is_bool = send.dtype == torch.bool
    if is_bool:  # gloo cannot all-gather bool tensors
        send = send.to(torch.uint8)
    if send.shape[0] < longest:
        pad = send.new_zeros((longest - send.shape[0], *send.shape[1:]))
        send = torch.cat([send, pad])
    parts = [torch.empty_like(send) for _ in range(size)]
    dist.all_gather(parts, send)
    out = torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])
    return (out.bool() if is_bool else out), sizes


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward all-reduces (SUM) and returns the local slice."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        out, sizes = _all_gather_padded(t)
        rank, _ = world()
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate `t` from all ranks in rank order, keeping the autograd graph.

    Shape: N_local x ... -> N_global x ... (identity without a process group).
    """
    if not is_distributed():
        return t
    return _GatherWithGrad.apply(t)


@overload
def gather_no_grad(t: Tensor) -> Tensor: ...
@overload
def gather_no_grad(t: None) -> None: ...


def gather_no_grad(t: Tensor | None) -> Tensor | None:
    """Concatenate ids / labels / attributes from all ranks in rank order (no gradient)."""
    if t is None or not is_distributed():
        return t
    with torch.no_grad():
        return _all_gather_padded(t.detach())[0]


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum of `t` over ranks (a new tensor, no gradient); `t` itself without a group."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out
