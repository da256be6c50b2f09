"""Negatives rules: too few negatives per query, and naive accumulation that adds none.

Read from the negatives monitor's records (monitors/negatives.py): per-query negatives of
the contrastive batch each query actually sees, that batch's size B, the loss floor ln(B)
and the accumulation mode. docs/accumulation.md explains why only cached accumulation
enlarges the negative set.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from contrastkit.doctor.findings import Finding, Severity
from contrastkit.doctor.rules.context import Context, _r
from contrastkit.doctor.rules.thresholds import MIN_NEGATIVES, TARGET_CONTRASTIVE_BATCH


def _negatives(ctx: Context) -> dict[str, Any] | None:
    """Median per-query negatives (mean and min per record), the contrastive batch and the
    accumulation of the run's records; None without records."""
    records = [r for r in ctx.signals if "negatives/mean" in r]
    if not records:
        return None
    last = records[-1]
    batch = int(statistics.median(r["negatives/contrastive_batch"] for r in records))
    return {
        "negatives_per_query": _r(statistics.median(r["negatives/mean"] for r in records)),
        "negatives_min": int(min(r["negatives/min"] for r in records)),
        "contrastive_batch": batch,
        "global_batch": ctx.batch_size,
        "accumulation": last.get("accumulation", ctx.cfg.train.accumulation),
        "accumulate": int(last.get("accumulate", ctx.cfg.train.accumulate)),
        "loss_floor": _r(math.log(batch)) if batch > 0 else 0.0,
        "records": len(records),
    }


def _cached_fix(ctx: Context) -> dict[str, Any]:
    """Cached accumulation with enough micro-batches for a >= TARGET_CONTRASTIVE_BATCH step."""
    # Rows of one micro-batch across every rank: the global batch without accumulation.
    per_step = max(ctx.batch_size // max(ctx.cfg.train.accumulate, 1), 1)
    accumulate = max(ctx.cfg.train.accumulate, math.ceil(TARGET_CONTRASTIVE_BATCH / per_step))
    return {"train.accumulation": "cached", "train.accumulate": accumulate}


def rule_negatives(ctx: Context) -> list[Finding]:
    """`too_few_negatives` and `naive_accumulation_no_negatives`."""
    ev = _negatives(ctx)
    if ev is None:
        return []
    out: list[Finding] = []
    naive = ev["accumulation"] == "naive" and ev["accumulate"] > 1
    if naive:
        cached_batch = ctx.batch_size
        severity: Severity = (
            "warning" if ev["contrastive_batch"] < TARGET_CONTRASTIVE_BATCH else "info"
        )
        out.append(
            Finding(
                "naive_accumulation_no_negatives",
                severity,
                {**ev, "negatives_with_cached": cached_batch - 1},
                f"train.accumulation: naive with accumulate {ev['accumulate']} computes the loss "
                f"per micro-batch, so each query sees {ev['negatives_per_query']:g} negatives "
                f"(a contrastive batch of {ev['contrastive_batch']}), not the ~{cached_batch - 1} "
                f"of the global batch of {cached_batch}: naive accumulation adds no negatives.",
                {"train.accumulation": "cached"},
                "cached (GradCache) accumulation computes the loss over the whole step's "
                "embeddings at the same memory; see docs/accumulation.md.",
            )
        )
    if ev["negatives_per_query"] < MIN_NEGATIVES:
        out.append(
            Finding(
                "too_few_negatives",
                "warning",
                {**ev, "threshold": MIN_NEGATIVES},
                f"Each query is contrasted with {ev['negatives_per_query']:g} negatives (a "
                f"contrastive batch of {ev['contrastive_batch']}, loss floor ln B = "
                f"{ev['loss_floor']:.3g}): too few for the loss to tell a match from its "
                "near neighbours.",
                _cached_fix(ctx),
                f"cached accumulation makes a contrastive batch of >= {TARGET_CONTRASTIVE_BATCH} "
                "at the micro-batch's memory; a larger data.batch_size works too if it fits. "
                "A small train split gets fewer steps per epoch at that batch: add epochs.",
            )
        )
    return out
