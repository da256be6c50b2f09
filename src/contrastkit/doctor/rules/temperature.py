"""Temperature rules: softmax temperature / SigLIP scale out of range, the learned scale's
trend (pinned at its clamp, falling toward 1) and a SigLIP bias far from log(1/B).
"""

from __future__ import annotations

import math
from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _flat_terms, _r, start_end
from contrastkit.doctor.rules.thresholds import (
    CLAMP_FRACTION,
    CLAMP_SHARE,
    MIN_RECORDS,
    RIGID_LOSS_DECREASE,
    SIGLIP_BIAS_TOLERANCE,
    SIGLIP_T_MIN,
    TAU_MAX,
    TAU_MIN,
    TOWARD_ONE_DROP,
    TOWARD_ONE_MAX,
)
from contrastkit.losses.clip import ClipObjective
from contrastkit.losses.siglip import SiglipObjective


def rule_temperature(ctx: Context) -> list[Finding]:
    """Temperature / SigLIP scale out of range, its trend, and the SigLIP bias."""
    out = []
    for i, o in enumerate(ctx.cfg.loss.objectives):
        scale = ctx.series(f"{o.name}/logit_scale")
        key = f"loss.objectives.{i}"
        if isinstance(o, ClipObjective):
            # Out of range = mis-set: the configured start (or the value a fixed temperature
            # keeps). A learned temperature that drifts from a good start is a trend
            # finding (`_scale_trend`), whose cause is usually elsewhere (e.g. the lr).
            end = start_end(scale)[1] if scale else 1.0 / o.temperature
            tau = o.temperature if o.learnable_temperature else 1.0 / end
            ev = {
                "objective": o.name,
                "temperature": _r(tau),
                "logit_scale": _r(1.0 / tau),
                "logit_scale_at_end": _r(end),
                "range": [TAU_MIN, TAU_MAX],
                "steps": [scale[0][0], scale[-1][0]] if scale else [],
            }
            if tau > TAU_MAX or tau < TAU_MIN:
                out.append(
                    Finding(
                        "temperature_out_of_range",
                        "error" if tau > TAU_MAX else "warning",
                        ev,
                        f"A softmax temperature of {tau:.3g} makes the logits span {2 / tau:.3g} nats, "
                        "so the softmax cannot separate positives from negatives."
                        if tau > TAU_MAX
                        else f"A softmax temperature of {tau:.3g} makes the loss so sharp that it only sees the hardest negative and gradients spike.",
                        {f"{key}.temperature": 0.07, f"{key}.learnable_temperature": True},
                    )
                )
            out += _scale_trend(
                ctx, i, o.name, scale, o.max_logit_scale if o.learnable_temperature else None
            )
        elif isinstance(o, SiglipObjective):
            end = math.exp(o.init_logit_scale)
            if not o.learnable and scale:
                end = start_end(scale)[1]
            if end < SIGLIP_T_MIN:
                out.append(
                    Finding(
                        "temperature_out_of_range",
                        "error",
                        {"objective": o.name, "logit_scale": _r(end), "min": SIGLIP_T_MIN},
                        f"A SigLIP scale t={end:.3g} separates positive and negative logits by under 2 nats.",
                        {
                            f"{key}.init_logit_scale": round(math.log(10.0), 4),
                            f"{key}.learnable": True,
                        },
                    )
                )
            out += _scale_trend(ctx, i, o.name, scale, None)
            out += _siglip_bias(ctx, i, o)
    return out


def _scale_trend(
    ctx: Context, i: int, name: str, scale: list[tuple[int, float]], clamp: float | None
) -> list[Finding]:
    out = []
    key = f"loss.objectives.{i}"
    if clamp is not None and len(scale) >= MIN_RECORDS:
        pinned = [s for s, v in scale if v >= CLAMP_FRACTION * clamp]
        if len(pinned) / len(scale) >= CLAMP_SHARE:
            out.append(
                Finding(
                    "logit_scale_at_clamp",
                    "warning" if clamp < 100 else "info",
                    {
                        "objective": name,
                        "max_logit_scale": clamp,
                        "first_step_at_clamp": pinned[0],
                        "share_of_records": _r(len(pinned) / len(scale)),
                    },
                    "The learned logit scale sits at its clamp, so the temperature is no longer learned "
                    "(normal late in long CLIP runs; early, it often means positives are too easy).",
                    {f"{key}.max_logit_scale": 100.0} if clamp < 100 else {},
                    "if it pins within the first epoch, check duplicate_groups / split_leakage findings.",
                )
            )
    if len(scale) >= MIN_RECORDS:
        s0, s1 = start_end(scale)
        if s1 < TOWARD_ONE_DROP * s0 and s1 < TOWARD_ONE_MAX:
            out.append(
                Finding(
                    "logit_scale_toward_one",
                    "warning",
                    {
                        "objective": name,
                        "start": _r(s0),
                        "end": _r(s1),
                        "steps": [scale[0][0], scale[-1][0]],
                    },
                    "The learned logit scale is falling toward 1: the loss prefers soft, uncertain "
                    "logits because positives cannot be told from negatives (noisy or mis-grouped pairs).",
                    {f"{key}.temperature": 0.07, f"{key}.learnable_temperature": False},
                    "fix the data first if the data doctor reports duplicate_groups or false_negatives.",
                )
            )
    return out


def _siglip_bias(ctx: Context, i: int, o: Any) -> list[Finding]:
    bias = ctx.series(f"{o.name}/logit_bias")
    end = start_end(bias)[1] if bias else o.init_logit_bias
    prior = -math.log(max(ctx.batch_size, 2))
    # Only a problem when it is stuck there: a fixed bias, or a loss that does not improve.
    stuck = not o.learnable or o.name in _flat_terms(ctx, RIGID_LOSS_DECREASE)
    if abs(end - prior) <= SIGLIP_BIAS_TOLERANCE or not stuck:
        return []
    return [
        Finding(
            "siglip_bias_off",
            "warning",
            {
                "objective": o.name,
                "logit_bias": _r(end),
                "log_1_over_B": _r(prior),
                "batch_size": ctx.batch_size,
                "tolerance": SIGLIP_BIAS_TOLERANCE,
            },
            f"The SigLIP bias {end:.3g} is far from log(1/B)={prior:.3g}, so at this batch size "
            "almost every pair starts on one side of the sigmoid and positives get little signal.",
            {
                f"loss.objectives.{i}.init_logit_bias": round(prior, 2),
                f"loss.objectives.{i}.learnable": True,
            },
        )
    ]
