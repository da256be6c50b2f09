"""Embedding capacity: an embedding space too small for a batch to be told apart.

Retrieval ranks a query's partner above the batch's other rows by cosine. In D
dimensions, B unit vectors cannot all be far apart: on a circle (D = 2) neighbours sit
2*pi/B apart (cosine 0.98 at B = 32), and at temperature 0.07 that is 0.3 nats between a
match and its neighbour. A collapse rule then sees an effective rank of at most D and
blames the lr; the cause is `model.embed_dim`.
"""

from __future__ import annotations

from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context
from contrastkit.doctor.rules.step_limits import _stalled

# Median nearest-neighbour cosine of 32 random unit vectors, measured (numpy, 200 draws):
# D=2 0.997, D=4 0.887, D=8 0.679, D=16 0.494, D=32 0.354. Below 8 dimensions even a
# spread-out batch leaves each row's nearest other row at cosine ~0.9.
MIN_EMBED_DIM = 8
# What a fix proposes: the smallest width of the shipped examples' embeddings.
SUGGESTED_EMBED_DIM = 32


def rule_embed_dim_too_small(ctx: Context) -> list[Finding]:
    """`embed_dim_too_small`: a tower's embedding has fewer than `MIN_EMBED_DIM`
    dimensions (recorded `collapse/<tower>/dim`, else `model.embed_dim`) and the loss
    stalled: the space cannot hold the batch apart, whatever the lr."""
    dims = {
        k.split("/")[1]: ctx.series(k)[-1][1] for k in ctx.keys("collapse/") if k.endswith("/dim")
    }
    dims = {t: d for t, d in dims.items() if d} or {"model": float(ctx.cfg.model.embed_dim)}
    small = {t: int(d) for t, d in dims.items() if d < MIN_EMBED_DIM}
    if not small or not _stalled(ctx):
        return []
    evidence: dict[str, Any] = {
        "dims": small,
        "min_dim": MIN_EMBED_DIM,
        "embed_dim": ctx.cfg.model.embed_dim,
        "batch_size": ctx.batch_size,
    }
    return [
        Finding(
            "embed_dim_too_small",
            "warning",
            evidence,
            f"The embeddings have {min(small.values())} dimension(s), under {MIN_EMBED_DIM}: "
            f"{ctx.batch_size} rows of a batch cannot lie far apart in so few dimensions, so "
            "matches cannot be told from their nearest non-matches (the effective rank is "
            "capped by the dimension, whatever the lr).",
            {"model.embed_dim": max(SUGGESTED_EMBED_DIM, ctx.cfg.model.embed_dim)},
            "a per-tower projection width, if set, must grow with it.",
        )
    ]
