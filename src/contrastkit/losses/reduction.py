"""Exact reduction of sum/count terms over micro-batches and ranks.

A per-unit term (see `TermSum`) of the whole step batch is Σ total / Σ count, the sums
running over every micro-batch on every rank. The global count C is known before any
backward (from the counts alone), so each piece back-propagates `total · W / C`
(W = world size): summed over micro-batches by gradient accumulation and averaged over
ranks by DistributedDataParallel, these give exactly d(Σ total / C)/dθ. The reported
value is the all-reduced total over C, the same on every rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from contrastkit.losses.distributed import all_reduce_sum, world
from contrastkit.losses.result import TermSum


def _add(pieces: Iterable[Mapping[str, TermSum]], field: str) -> dict[str, Tensor]:
    """Per term, one `TermSum` field summed over local pieces (micro-batches), detached."""
    sums: dict[str, Tensor] = {}
    for piece in pieces:
        for name, term in piece.items():
            v = getattr(term, field).detach()
            sums[name] = sums[name] + v if name in sums else v
    return sums


def add_counts(pieces: Iterable[Mapping[str, TermSum]]) -> dict[str, Tensor]:
    """Per term, the count summed over local pieces (micro-batches), detached."""
    return _add(pieces, "count")


def add_totals(pieces: Iterable[Mapping[str, TermSum]]) -> dict[str, Tensor]:
    """Per term, the total summed over local pieces (micro-batches), detached."""
    return _add(pieces, "total")


def global_counts(counts: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Per term, the count summed over ranks: one all-reduce for all terms (sorted names,
    so every rank packs the same layout)."""
    names = sorted(counts)
    if not names:
        return {}
    packed = all_reduce_sum(_stack([counts[n] for n in names]))
    return dict(zip(names, packed.unbind(), strict=True))


def share_of_mean(term: TermSum, global_count: Tensor) -> Tensor:
    """This piece's part of the global mean, to back-propagate: total · W / C (0 when the
    whole step scored nothing; still on the graph)."""
    _, world_size = world()
    dtype = _at_least_float32(term.total.dtype)
    return term.total.to(dtype) * world_size / global_count.clamp_min(1.0).to(dtype)


def _at_least_float32(dtype: torch.dtype) -> torch.dtype:
    """Half-precision (AMP) sums are divided in float32: a bf16 count rounds above 256."""
    return torch.promote_types(dtype, torch.float32)


def _stack(values: list[Tensor]) -> Tensor:
    """0-dim tensors stacked in their common (at least float32) dtype."""
    dtype = torch.float32
    for v in values:
        dtype = torch.promote_types(dtype, v.dtype)
    return torch.stack([v.detach().reshape(()).to(dtype) for v in values])


def global_means(totals: Mapping[str, Tensor], counts: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Reported values: all-reduced totals / global counts, detached (one all-reduce)."""
    names = sorted(totals)
    if not names:
        return {}
    packed = all_reduce_sum(_stack([totals[n] for n in names]))
    return {n: packed[i] / counts[n].clamp_min(1.0).to(packed.dtype) for i, n in enumerate(names)}
