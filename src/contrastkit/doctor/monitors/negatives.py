"""The negatives monitor: how many negatives each query of a step is contrasted with.

A contrastive loss compares each query with every row of its *contrastive batch*; the rows
of the query's own group are its positives, the rest its negatives. Which rows form that
batch depends on how the step is computed (docs/accumulation.md):

- `cached` accumulation (GradCache) computes the loss once on the embeddings of every
  micro-batch of the step: the contrastive batch is the whole step's rows;
- `naive` accumulation computes one loss per micro-batch: the contrastive batch is the
  micro-batch, whatever `train.accumulate` says (accumulation adds no negatives);
- across processes the losses gather every rank's embeddings (global negatives): the
  contrastive batch is world size times the local one.

The positives of other ranks' rows are not visible to this rank (finding them would need a
collective outside the engine's schedule); their rows count as negatives, so on several
processes the count is an upper bound by the few cross-rank positives a random sampler
makes. The softmax loss at chance is ln(B) for a contrastive batch of B rows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from contrastkit.doctor.monitors.base import Monitor
from contrastkit.events import State
from contrastkit.losses.distributed import world


def negatives_per_query(group_ids: Tensor, parts: int = 1, world_size: int = 1) -> Tensor:
    """Negatives of every query: its contrastive batch minus the rows of its group.

    Args:
        group_ids: (B,) group id of each row of the step (equal ids are positives).
        parts: contrastive batches the step is cut into, as consecutive chunks of sizes
            differing by at most 1 (naive accumulation: `train.accumulate`; cached: 1).
        world_size: processes whose rows join each contrastive batch (global negatives).

    Returns:
        (B,) long tensor; a query's own row counts as a positive.
    """
    ids = group_ids.reshape(-1)
    size = len(ids)
    parts = max(1, min(parts, size))
    bounds = [i * size // parts for i in range(parts + 1)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        chunk = ids[lo:hi]
        positives = (chunk[:, None] == chunk[None, :]).sum(dim=1)
        rows = (hi - lo) * world_size
        out.append(rows - positives)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def negatives_stats(
    group_ids: Tensor, *, accumulate: int, mode: str, world_size: int = 1
) -> dict[str, Any]:
    """The negatives record of one step (see the module docstring for the contrastive batch).

    Returns:
        `negatives/mean`, `negatives/min` per query, `negatives/contrastive_batch` (rows in
        one query's contrastive batch, B), `negatives/loss_floor` (ln B, the softmax loss
        at chance), `accumulation` (mode), `accumulate` and `world_size`.
    """
    parts = accumulate if mode == "naive" else 1
    neg = negatives_per_query(group_ids, parts=parts, world_size=world_size).float()
    rows = len(group_ids.reshape(-1))
    batch = math.ceil(rows / max(1, min(parts, rows))) * world_size
    return {
        "negatives/mean": float(neg.mean()) if len(neg) else 0.0,
        "negatives/min": float(neg.min()) if len(neg) else 0.0,
        "negatives/contrastive_batch": batch,
        "negatives/loss_floor": math.log(batch) if batch > 0 else 0.0,
        "accumulation": mode,
        "accumulate": accumulate,
        "world_size": world_size,
    }


class NegativesMonitor(Monitor):
    """Negatives per query and the accumulation mode of the step (at BATCH_END).

    Args:
        every: cadence in steps.
        accumulate / mode: `train.accumulate` and `train.accumulation`.
    """

    name = "negatives"

    def __init__(self, every: int = 25, accumulate: int = 1, mode: str = "cached") -> None:
        super().__init__(every)
        self.accumulate, self.mode = accumulate, mode

    @override
    def on_batch_end(self, state: State) -> None:
        step = state.step - 1  # the step just trained
        groups = (state.batch or {}).get("group_ids")
        if not isinstance(groups, Tensor) or not self.due(step):
            return
        stats = negatives_stats(
            groups.detach().cpu(), accumulate=self.accumulate, mode=self.mode, world_size=world()[1]
        )
        self.record(state, step, stats)
