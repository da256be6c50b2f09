"""Loss-term weights over training: base weight, per-term schedule, per-phase override.

Ramping an auxiliary term in (or a contrastive term up) is a common cure for one term
dominating the gradient early in training; phases pin weights outright (e.g. weight 0 for
a head whose tower is frozen during warm-up).
"""

from __future__ import annotations

import math

from contrastkit.config import LossConfig, Phase, WeightSchedule
from contrastkit.errors import ConfigError


def schedule_value(s: WeightSchedule, step: int) -> float:
    """Weight of one term at optimiser step `step` (0-based).

    - constant: `start`.
    - linear: `start` → `end` over `steps`, then `end`.
    - cosine: `start` → `end` along half a cosine over `steps`, then `end`.
    - step: `start · gamma^i`, i = number of `milestones` ≤ step.
    """
    if s.kind == "constant":
        return float(s.start)
    if s.kind == "step":
        passed = sum(1 for m in s.milestones if step >= m)
        return float(s.start * s.gamma**passed)
    if s.end is None or s.steps is None:
        raise ConfigError(f"loss.schedules: kind {s.kind} needs both `end` and `steps`")
    frac = min(max(step, 0) / s.steps, 1.0)
    if s.kind == "linear":
        return float(s.start + (s.end - s.start) * frac)
    if s.kind == "cosine":
        return float(s.end + (s.start - s.end) * 0.5 * (1.0 + math.cos(math.pi * frac)))
    raise ConfigError(f"loss.schedules: unknown kind {s.kind!r}")


def weights_at(cfg: LossConfig, step: int, phase: Phase | None) -> dict[str, float]:
    """Every active term's weight at `step`: phase override > schedule > base weight."""
    weights = cfg.term_weights()
    for name, schedule in cfg.schedules.items():
        if name not in weights:
            raise ConfigError(f"loss.schedules.{name}: no such term; terms: {sorted(weights)}")
        weights[name] = schedule_value(schedule, step)
    if phase is not None:
        for name, value in phase.weights.items():
            if name not in weights:
                raise ConfigError(
                    f"phase {phase.name or '?'} weights.{name}: no such term; terms: {sorted(weights)}"
                )
            weights[name] = float(value)
    return weights
