"""The context every rule reads (`Context`) and the small helpers the rules share.

`start_end` (mean of the first / last fifth of a series), `term_key` (config key of a
term's weight), `_r` (rounding for evidence), `_active` / `_flat_terms` (a term's loss
where its weight is > 0, and the terms whose loss did not fall).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from contrastkit.config import Config
from contrastkit.doctor.findings import Finding


@dataclass
class Context:
    """What every rule reads: the signals (sorted by step), the config, the global batch
    size and the data doctor's findings."""

    signals: list[dict[str, Any]]
    cfg: Config
    batch_size: int
    data: list[Finding]

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) of every finite numeric record of `key`, in step order."""
        out = []
        for r in self.signals:
            v = r.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out.append((int(r["step"]), float(v)))
        return out

    def chance_batch(self) -> int:
        """Rows one query's softmax loss runs over: the negatives monitor's contrastive
        batch (median over its records) where recorded, else the global batch. They differ
        under naive accumulation, whose loss sits at chance at ln(micro-batch), not
        ln(global batch)."""
        batches = sorted(int(v) for _, v in self.series("negatives/contrastive_batch") if v > 0)
        return batches[len(batches) // 2] if batches else self.batch_size

    def keys(self, prefix: str) -> list[str]:
        """Every recorded key starting with `prefix`, sorted."""
        return sorted({k for r in self.signals for k in r if k.startswith(prefix)})


def start_end(series: list[tuple[int, float]]) -> tuple[float, float]:
    """Mean of the first and of the last fifth of a series (at least one record each)."""
    n = max(len(series) // 5, 1)
    return (sum(v for _, v in series[:n]) / n, sum(v for _, v in series[-n:]) / n)


def term_key(cfg: Config, term: str) -> str:
    """Config key of a term's weight: `loss.objectives.<i>.weight` or `loss.<aux>.weight`."""
    for i, o in enumerate(cfg.loss.objectives):
        if o.name == term:
            return f"loss.objectives.{i}.weight"
    return f"loss.{term}.weight"


def _r(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _active(ctx: Context, term: str) -> list[tuple[int, float]]:
    """A term's loss at the records where its weight was > 0."""
    weights = dict(ctx.series(f"weight/{term}"))
    return [(s, v) for s, v in ctx.series(f"loss/{term}") if weights.get(s, 1.0) > 0]


def _flat_terms(ctx: Context, threshold: float) -> list[str]:
    flat = []
    for term in [o.name for o in ctx.cfg.loss.objectives] + ctx.cfg.loss.auxiliary_terms():
        values = _active(ctx, term)
        if len(values) >= 2:
            s0, s1 = start_end(values)
            if s0 > 0 and (s0 - s1) / s0 < threshold:
                flat.append(term)
    return flat
