"""What limits the optimizer steps besides `train.lr`: a schedule that never reaches the
configured lr, a gradient clip far below the gradient's norm, and too few steps.

Both leave the same symptoms as an lr that is too small (steps under the healthy
update-to-weight ratio, a loss at chance), but raising `train.lr` is the wrong fix: the
lr the user wrote is never applied. Each rule reads what the run did (the scheduled
`lr/base`, the pre-clip `grad_norm/<module>`) and names the config key that shrank it.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _r, start_end
from contrastkit.doctor.rules.lr_scale import typical_update
from contrastkit.doctor.rules.thresholds import (
    CHANCE_RATIO,
    MIN_DECREASE,
    MIN_RECORDS,
    UPDATE_RATIO_HEALTHY,
)

# A finished run whose scheduled lr never reached half of train.lr never ran at the lr the
# user wrote. Half, as PEAK_LR_SHARE: a linear warm-up or cosine decay passes through
# every value between 0 and the peak, and any run that leaves its warm-up records values
# near the peak (cadence records every `doctor.every` steps, the rule needs >= 4 of them).
LR_PEAK_REACHED_SHARE = 0.5
# The warm-up a fix proposes: the config's default fraction of the run.
DEFAULT_WARMUP_FRACTION = 0.05
# A clip below 1% of the median pre-clip gradient norm rescales every step by > 100x.
# Healthy runs clip at 1.0 with norms of ~0.3-10 (factor >= 0.1); the rule also needs the
# steps under the healthy update ratio, so a large clip factor that AdamW divides out
# (per-weight gradients still above eps) is not reported.
CLIP_DOMINATES_FACTOR = 0.01
# Fewer optimizer steps than this cannot leave chance, whatever else is right: the healthy
# tiny digits run (bench/recipes.py BASE, lr 2e-3, batch 32) is still at 3.33 nats
# (chance ln 32 = 3.47) at step 10 and first falls clearly below it (2.88) at step 20.
MIN_STEPS_TO_LEARN = 20


def rule_lr_never_peaks(ctx: Context) -> list[Finding]:
    """`lr_never_peaks`: the scheduled lr (`lr/base`, train.lr x schedule) stayed below
    `LR_PEAK_REACHED_SHARE` of `train.lr` on every record of a run that finished: a
    warm-up longer than the run keeps every step in the ramp."""
    lrs = ctx.series("lr/base")
    if len(lrs) < MIN_RECORDS or any(r.get("event") == "stopped" for r in ctx.signals):
        return []  # a run stopped inside its warm-up is `run_stopped`'s to explain
    t = ctx.cfg.train
    peak = max(v for _, v in lrs)
    if peak >= LR_PEAK_REACHED_SHARE * t.lr or peak == 0:
        return []  # a scheduled lr of exactly 0 throughout is `lr_zero`'s, not a warm-up's
    max_steps = max([int(r.get("max_steps") or 0) for r in ctx.signals] + [t.max_steps or 0])
    warmup = t.warmup_steps or math.ceil(t.warmup_fraction * max_steps)
    last = lrs[-1][0]
    evidence: dict[str, Any] = {
        "lr": t.lr,
        "scheduled_lr_max": _r(peak),
        "share_of_lr": _r(peak / t.lr),
        "warmup_steps": warmup,
        "max_steps": max_steps or None,
        "last_step": last,
        "records": len(lrs),
    }
    if warmup > last + 1:
        cause = (
            f"The warm-up ({warmup} steps) is longer than the run ({max_steps or last + 1} "
            f"steps): the scheduled lr peaked at {peak:.2g}, {peak / t.lr:.1%} of train.lr "
            f"{t.lr:g}, so every step stayed in the ramp."
        )
        fix: dict[str, Any] = {"train.warmup_steps": 0}
        if t.warmup_fraction > DEFAULT_WARMUP_FRACTION:
            fix["train.warmup_fraction"] = DEFAULT_WARMUP_FRACTION
        note = (
            "warmup_steps 0 uses warmup_fraction of the run; keep train.lr as it is "
            "(raising it would apply a different lr once the warm-up ends)."
        )
    else:
        cause = (
            f"The scheduled lr never went above {peak:.2g}, {peak / t.lr:.1%} of train.lr "
            f"{t.lr:g}, although the warm-up ({warmup} steps) ended within the run."
        )
        fix, note = (
            {},
            "check the lr schedule (lr_schedule, min_lr_ratio) and any callback that sets the lr.",
        )
    return [Finding("lr_never_peaks", "warning", evidence, cause, fix, note)]


def _total_grad_norms(ctx: Context) -> list[float]:
    """The global pre-clip gradient norm per record: the modules' norms combined."""
    by_step: dict[int, float] = {}
    for key in ctx.keys("grad_norm/"):
        for step, v in ctx.series(key):
            by_step[step] = by_step.get(step, 0.0) + v * v
    return [math.sqrt(v) for _, v in sorted(by_step.items())]


def rule_grad_clip_too_small(ctx: Context) -> list[Finding]:
    """`grad_clip_too_small`: `train.grad_clip` is below `CLIP_DOMINATES_FACTOR` of the
    median pre-clip gradient norm, and the steps are below the healthy update ratio or the
    loss stalled (the tiny digits run at clip 1e-6: ratio 1.6e-4, 10x under its healthy
    1.6e-3 yet inside the generic range, loss at chance).

    AdamW divides a rescaled gradient out, until the clipped gradient per weight falls
    under `train.eps`: from there each step moves a weight by ~lr x g / eps instead of
    ~lr, so the clip, not the lr, sets how far the weights move."""
    clip = ctx.cfg.train.grad_clip
    norms = _total_grad_norms(ctx)
    if clip is None or len(norms) < MIN_RECORDS:
        return []
    median = statistics.median(norms)
    update = typical_update(ctx)
    if median <= 0 or clip / median >= CLIP_DOMINATES_FACTOR:
        return []
    small_steps = update is not None and update["max_ratio"] < UPDATE_RATIO_HEALTHY[0]
    if not small_steps and not _stalled(ctx):
        return []  # the run learns: the clip rescales, AdamW divides it out
    clipped = sum(n > clip for n in norms)
    return [
        Finding(
            "grad_clip_too_small",
            "warning",
            {
                "grad_clip": clip,
                "grad_norm_median": _r(median),
                "clip_scale": _r(clip / median),
                "records_clipped": clipped,
                "records": len(norms),
                "update_ratio_max": _r(update["max_ratio"]) if update else None,
                "healthy_range": list(UPDATE_RATIO_HEALTHY),
                "eps": ctx.cfg.train.eps,
            },
            f"train.grad_clip {clip:g} scales every gradient (median norm {median:.3g}) by "
            f"{clip / median:.2g}: so shrunk, AdamW's eps ({ctx.cfg.train.eps:g}) dominates "
            "and each step moves a weight by ~lr x g / eps instead of ~lr, so the clip, not "
            "the lr, sets how far the weights move.",
            {"train.grad_clip": 1.0},
            "clip at ~1 (the usual value) or null; keep train.lr: the lr is not what is small.",
        )
    ]


def _stalled(ctx: Context) -> bool:
    """A clip loss at chance, or a total loss that fell by under `MIN_DECREASE`."""
    chance = math.log(max(ctx.chance_batch(), 2))
    for o in ctx.cfg.loss.objectives:
        values = ctx.series(f"loss/{o.name}")
        if o.type == "clip" and values and start_end(values)[1] >= CHANCE_RATIO * chance:
            return True
    total = ctx.series("loss/total")
    if len(total) >= 2:
        s0, s1 = start_end(total)
        return s0 > 0 and (s0 - s1) / s0 < MIN_DECREASE
    return False


def rule_run_too_short(ctx: Context) -> list[Finding]:
    """`run_too_short`: a run that finished after fewer than `MIN_STEPS_TO_LEARN` optimizer
    steps with its loss stalled: the lr, the temperature or the data cannot be judged from
    so few steps (the first AdamW steps are large by design), and none of them is the cause."""
    if not ctx.signals or any(r.get("event") == "stopped" for r in ctx.signals):
        return []
    planned = max([int(r.get("max_steps") or 0) for r in ctx.signals])
    steps = planned or max(int(r.get("step", 0)) for r in ctx.signals) + 1
    if steps >= MIN_STEPS_TO_LEARN or not _stalled(ctx):
        return []
    t = ctx.cfg.train
    if t.max_steps is not None and t.max_steps < MIN_STEPS_TO_LEARN:
        fix: dict[str, Any] = {"train.max_steps": None}
    else:
        fix = {"train.epochs": math.ceil(t.epochs * MIN_STEPS_TO_LEARN / steps)}
    return [
        Finding(
            "run_too_short",
            "warning",
            {
                "steps": steps,
                "min_steps": MIN_STEPS_TO_LEARN,
                "max_steps": t.max_steps,
                "epochs": t.epochs,
                "batch_size": ctx.batch_size,
            },
            f"The run took {steps} optimizer step{'s' if steps != 1 else ''}, under the "
            f"{MIN_STEPS_TO_LEARN} a contrastive model needs to leave chance: the loss and the "
            "metrics show only that it has not trained yet.",
            fix,
            "train for more steps (more epochs, no max_steps, or more rows) before judging "
            "the lr, the temperature or the data.",
        )
    ]
