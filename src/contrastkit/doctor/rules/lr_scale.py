"""Learning-rate scale rules: the update-to-weight ratio says the lr is far too small or
far too large, whatever the gradient's size (Adam divides it out).

The ratio ||dw|| / ||w|| of one optimizer step is recorded per module on cadence steps
(`update_ratio/<module>`, monitors/updates.py). The rules read it where the schedule is
near its peak (`lr/base` >= `PEAK_LR_SHARE` of its maximum): warm-up and the end of a
cosine decay move little by design. Loss parameters (`criterion`: temperature, bias) are
left out: they get their own lr floor (`train.new_params_lr_scale`) and rules.
"""

from __future__ import annotations

import statistics
from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _r
from contrastkit.doctor.rules.thresholds import (
    LR_TOO_LARGE_RATIO,
    LR_TOO_LARGE_RECORDS,
    LR_TOO_SMALL_RATIO,
    PEAK_LR_SHARE,
    UPDATE_RATIO_HEALTHY,
    UPDATE_RATIO_TARGET,
)
from contrastkit.doctor.signals import CRITERION

PREFIX = "update_ratio/"


def peak_ratios(ctx: Context) -> dict[int, dict[str, float]]:
    """step -> {module: update ratio} of the model's modules, on records where the
    scheduled lr is at least `PEAK_LR_SHARE` of its peak (all records without `lr/base`)."""
    by_step: dict[int, dict[str, float]] = {}
    for key in ctx.keys(PREFIX):
        module = key[len(PREFIX) :]
        if module == CRITERION:
            continue
        for step, v in ctx.series(key):
            by_step.setdefault(step, {})[module] = v
    lrs = dict(ctx.series("lr/base"))
    if lrs and max(lrs.values()) > 0:
        floor = PEAK_LR_SHARE * max(lrs.values())
        by_step = {s: r for s, r in by_step.items() if lrs.get(s, floor) >= floor}
    return {s: r for s, r in sorted(by_step.items()) if r}


def typical_update(ctx: Context) -> dict[str, Any] | None:
    """The median over peak records of the largest module ratio, with the per-module
    medians (None without update records): the evidence both lr rules and the lr fix of
    `loss_at_chance` rest on."""
    ratios = peak_ratios(ctx)
    if not ratios:
        return None
    modules = sorted({m for r in ratios.values() for m in r})
    per_module = {m: statistics.median(r[m] for r in ratios.values() if m in r) for m in modules}
    maxima = {s: max(r.values()) for s, r in ratios.items()}
    return {
        "max_ratio": statistics.median(maxima.values()),
        "per_module": per_module,
        "records": len(ratios),
        "steps": [min(ratios), max(ratios)],
        "above_large": {s: v for s, v in maxima.items() if v > LR_TOO_LARGE_RATIO},
    }


def lr_fix(ctx: Context, ratio: float) -> dict[str, float]:
    """`train.lr` scaled so the largest module's ratio lands on `UPDATE_RATIO_TARGET`
    (the ratio is ~proportional to the lr under AdamW)."""
    return {"train.lr": _r(ctx.cfg.train.lr * UPDATE_RATIO_TARGET / max(ratio, 1e-30), 2)}


def rule_lr_scale(ctx: Context) -> list[Finding]:
    """`lr_too_small` / `lr_too_large` from the update-to-weight ratio."""
    typical = typical_update(ctx)
    if typical is None:
        return []
    ratio = typical["max_ratio"]
    evidence = {
        "update_ratio_max": _r(ratio),
        "update_ratio": {m: _r(v) for m, v in typical["per_module"].items()},
        "healthy_range": list(UPDATE_RATIO_HEALTHY),
        "lr": ctx.cfg.train.lr,
        "records": typical["records"],
        "steps": typical["steps"],
    }
    # Exactly 0: nothing moved at all, an lr (or lr_scale) of 0 that lr_zero names; scaling
    # 0 up would give an absurd lr (the lr_scale-0 case read 3e+24).
    if 0 < ratio < LR_TOO_SMALL_RATIO:
        return [
            Finding(
                "lr_too_small",
                "warning",
                {**evidence, "threshold": LR_TOO_SMALL_RATIO},
                f"Each optimizer step moves every trainable module by under {ratio:.2g} of its "
                f"norm (healthy: {UPDATE_RATIO_HEALTHY[0]:g}-{UPDATE_RATIO_HEALTHY[1]:g}): the "
                "learning rate is far too small for the weights to change within the run.",
                lr_fix(ctx, ratio),
                f"the lr that brings the largest module to ~{UPDATE_RATIO_TARGET:g} per step "
                "(the update ratio scales with the lr under AdamW).",
            )
        ]
    large = typical["above_large"]
    if len(large) >= LR_TOO_LARGE_RECORDS:
        # The weights an exploding lr inflates make later ratios look smaller (the norm
        # grows), so the size of the problem is read from the records above the threshold.
        big = statistics.median(large.values())
        return [
            Finding(
                "lr_too_large",
                "warning",
                {
                    **evidence,
                    "large_steps": {s: _r(v) for s, v in sorted(large.items())[:10]},
                    "threshold": LR_TOO_LARGE_RATIO,
                },
                f"{len(large)} recorded steps near the schedule's peak moved a module by more "
                f"than {LR_TOO_LARGE_RATIO:g} of its norm (median {big:.2g}; healthy: "
                f"{UPDATE_RATIO_HEALTHY[0]:g}-{UPDATE_RATIO_HEALTHY[1]:g}): the learning rate "
                "is far too large, so each step rewrites the weights.",
                {**lr_fix(ctx, big), "train.grad_clip": ctx.cfg.train.grad_clip or 1.0},
                f"the lr that brings those steps to ~{UPDATE_RATIO_TARGET:g} of the weights' norm.",
            )
        ]
    return []
