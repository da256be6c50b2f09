"""Optimisation rules: non-finite loss, zero learning rate, optimizer groups, loss progress
and modules that never receive a gradient.
"""

from __future__ import annotations

import math
from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _active, _r, start_end
from contrastkit.doctor.rules.lr_scale import lr_fix, typical_update
from contrastkit.doctor.rules.thresholds import (
    CHANCE_RATIO,
    LR_ZERO,
    MIN_DECREASE,
    MIN_RECORDS,
    TAU_MAX,
    UPDATE_RATIO_HEALTHY,
    UPDATE_RATIO_TARGET,
)
from contrastkit.losses.clip import ClipObjective

# Recorded values that go non-finite when an update explodes, besides the loss itself.
_EXPLODING = ("loss/", "grad_norm/")
_SCALES = ("/logit_scale", "/logit_bias")


def _nonfinite_records(ctx: Context) -> list[tuple[int, str]]:
    """(step, what) for every record that shows a non-finite step: the monitors' and the
    engine's counts of skipped steps, a NaN / Inf loss, gradient norm, temperature or
    bias, a logit scale that underflowed to 0 (exp of a huge negative parameter: the next
    1 / scale divides by zero), and a stop record saying the run ended on non-finite steps."""
    bad = []
    for r in ctx.signals:
        step = int(r.get("step", 0))
        if r.get("nonfinite_steps"):
            bad.append((step, "nonfinite_steps"))
        if r.get("event") == "stopped" and r.get("nonfinite"):
            bad.append((step, "stopped"))
        for k, v in r.items():
            if not isinstance(v, int | float) or isinstance(v, bool):
                continue
            watched = k.startswith(_EXPLODING) or k.endswith(_SCALES)
            underflow = k.endswith("/logit_scale") and v == 0
            if (watched and not math.isfinite(v)) or underflow:
                bad.append((step, k))
    return bad


def rule_loss_nan(ctx: Context) -> list[Finding]:
    """`loss_nan` from any record of a non-finite step (`_nonfinite_records`)."""
    bad = _nonfinite_records(ctx)
    if not bad:
        return []
    lr = ctx.cfg.train.lr
    fix: dict[str, Any] = {"train.lr": _r(lr / 10), "train.grad_clip": 1.0}
    if ctx.cfg.train.amp == "fp16":
        fix["train.amp"] = "bf16"
    stops = [r for r in ctx.signals if r.get("event") == "stopped"]
    evidence: dict[str, Any] = {
        "first_step": min(s for s, _ in bad),
        "records": len(bad),
        "signals": sorted({k for _, k in bad})[:10],
    }
    if stops:
        evidence["stopped_at_step"] = stops[-1].get("step")
    return [
        Finding(
            "loss_nan",
            "error",
            evidence,
            "The loss became NaN/Inf (exploding update or overflow), after which nothing is learned"
            + ("; the run stopped on it." if stops else "."),
            fix,
        )
    ]


def rule_run_stopped(ctx: Context) -> list[Finding]:
    """A run that ended before its last step for another reason than non-finite steps
    (those are `loss_nan`): the error it stopped on, so findings.json always says why."""
    stops = [r for r in ctx.signals if r.get("event") == "stopped" and not r.get("nonfinite")]
    if not stops:
        return []
    stop = stops[-1]
    return [
        Finding(
            "run_stopped",
            "error",
            {"step": stop.get("step"), "error": str(stop.get("error", ""))},
            f"Training stopped at step {stop.get('step')}: {stop.get('error', 'unknown error')}",
            fix_note="see the error above and the other findings; resume with "
            "`contrastkit train CONFIG --resume auto` once it is fixed.",
        )
    ]


def rule_lr_zero(ctx: Context) -> list[Finding]:
    """`lr_zero`: no parameter group learns after warm-up."""
    # The scheduled base rate when recorded: a floor multiplier on new parameters (the
    # temperature) keeps lr/max above zero while every model weight stands still.
    # The model's own groups (lr/model) first: `lr_scale: 0` on every tower leaves the
    # temperature's group, and lr/max, above zero while no model weight can move.
    lrs = ctx.series("lr/base") or ctx.series("lr/max")
    model = dict(ctx.series("lr/model"))
    lrs = [(s, min(v, model.get(s, v))) for s, v in lrs]
    if not lrs:
        return []
    t = ctx.cfg.train
    max_steps = max([r.get("max_steps", 0) for r in ctx.signals] + [t.max_steps or 0])
    warmup = t.warmup_steps or math.ceil(t.warmup_fraction * max_steps)
    after = [v for s, v in lrs if s >= warmup] or [v for _, v in lrs]
    if max(after) > LR_ZERO:
        return []
    zeros = {k: 1.0 for k, v in t.lr_scale.items() if v == 0}
    fix: dict[str, Any] = {f"train.lr_scale.{k}": v for k, v in zeros.items()}
    if not fix:
        fix = {"train.lr": max(t.lr, 1e-4), "train.min_lr_ratio": 0.0}
    return [
        Finding(
            "lr_zero",
            "error",
            {
                "max_lr_after_warmup": max(after),
                "warmup_steps": warmup,
                "records": len(after),
                "last_step": lrs[-1][0],
            },
            "Every parameter group of the model has learning rate 0 after warm-up, so no "
            "model weight changes.",
            fix,
        )
    ]


def rule_optimizer(ctx: Context) -> list[Finding]:
    """Optimizer groups: parameters left out, frozen ones with a gradient, decayed temperature."""
    out = []
    missing = [r for r in ctx.signals if r.get("not_in_optimizer")]
    if missing:
        r = missing[0]
        out.append(
            Finding(
                "params_not_in_optimizer",
                "error",
                {
                    "step": r["step"],
                    "event": r.get("event"),
                    "count": r["not_in_optimizer"],
                    "names": r.get("not_in_optimizer_names", []),
                },
                "Parameters require gradients but belong to no optimizer group, so they never update.",
                fix_note="build the optimizer over every parameter of the model and the criterion "
                "(frozen ones included); a custom optimizer / callback that adds modules late must add them.",
            )
        )
    frozen = [r for r in ctx.signals if r.get("frozen_with_grad")]
    if frozen:
        r = frozen[0]
        out.append(
            Finding(
                "frozen_param_gets_grad",
                "warning",
                {
                    "first_step": r["step"],
                    "count": r["frozen_with_grad"],
                    "names": r.get("frozen_with_grad_names", []),
                    "records": len(frozen),
                },
                "Parameters with requires_grad=False hold a non-zero gradient, so weight decay "
                "or momentum may still change the modules meant to be frozen.",
                fix_note="freeze through train.freeze / train.phases (set before the forward) "
                "and clear gradients with zero_grad(set_to_none=True).",
            )
        )
    decayed = [
        g
        for r in ctx.signals
        for g in r.get("temperature_groups", [])
        if g.get("weight_decay", 0) > 0
    ]
    if decayed:
        out.append(
            Finding(
                "weight_decay_on_temperature",
                "warning",
                {
                    "params": sorted({g["param"] for g in decayed}),
                    "weight_decay": max(g["weight_decay"] for g in decayed),
                },
                "Weight decay pulls logit_scale / logit_bias toward 0, i.e. the temperature toward 1, "
                "against what the loss learns.",
                {"train.weight_decay": 0.0},
                "better: keep weight decay but put logit_scale / logit_bias (and biases, norms) "
                "in a no-decay parameter group, as contrastkit.train.optim does.",
            )
        )
    return out


def rule_loss_progress(ctx: Context) -> list[Finding]:
    """`loss_at_chance` per objective, `loss_not_decreasing` per term and for the total."""
    out = []
    b = max(ctx.chance_batch(), 2)
    at_chance = set()
    for i, o in enumerate(ctx.cfg.loss.objectives):
        values = _active(ctx, o.name)
        if not values:
            continue
        s0, s1 = start_end(values)
        margins = ctx.series(f"{o.name}/mean_margin")
        margin = start_end(margins)[1] if margins else getattr(o, "base_margin", 0.0)
        # Triplet "chance" = every distance equal, loss = the (mean, adaptive) margin.
        chance = math.log(b) if o.type == "clip" else margin if o.type == "triplet" else None
        if chance and s1 >= CHANCE_RATIO * chance:
            at_chance.add(o.name)
            scale = ctx.series(f"{o.name}/logit_scale")
            fix: dict[str, Any] = {}
            if (
                isinstance(o, ClipObjective)
                and (start_end(scale)[1] if scale else 1 / o.temperature) < 1 / TAU_MAX
            ):
                fix = {f"loss.objectives.{i}.temperature": 0.07}
            note, update = "", typical_update(ctx)
            if not fix:
                fix, note = _lr_evidence_fix(ctx, update)
            out.append(
                Finding(
                    "loss_at_chance",
                    "error",
                    {
                        "objective": o.name,
                        "loss_start": _r(s0),
                        "loss_end": _r(s1),
                        "chance": _r(chance),
                        "batch_size": b,
                        "steps": [values[0][0], values[-1][0]],
                        "update_ratio_max": _r(update["max_ratio"]) if update else None,
                    },
                    f"The {o.type} loss ends at {s1:.3g}, at chance level {chance:.3g}: "
                    "the towers have learned nothing that tells matches from non-matches.",
                    fix,
                    note,
                )
            )
    terms = [o.name for o in ctx.cfg.loss.objectives] + [
        t for t in ctx.cfg.loss.auxiliary_terms() if f"loss/{t}" in ctx.keys("loss/")
    ]
    # With phases the weights change mid-run, so the weighted total may rise while every
    # term falls (a term switched on): judge the terms alone then.
    for term in ["total", *terms] if not ctx.cfg.train.phases else list(terms):
        if term in at_chance or (term == "total" and at_chance):  # already explained
            continue
        values = ctx.series("loss/total") if term == "total" else _active(ctx, term)
        if len(values) < MIN_RECORDS:
            continue
        s0, s1 = start_end(values)
        if s0 > 0 and (s0 - s1) / s0 < MIN_DECREASE:
            lr = ctx.cfg.train.lr
            update = typical_update(ctx)
            measured = _lr_evidence_fix(ctx, update)[0] if update else {}
            out.append(
                Finding(
                    "loss_not_decreasing",
                    "warning",
                    {
                        "term": term,
                        "loss_start": _r(s0),
                        "loss_end": _r(s1),
                        "relative_decrease": _r((s0 - s1) / s0),
                        "steps": [values[0][0], values[-1][0]],
                    },
                    f"The {term} loss fell by under {MIN_DECREASE:.0%} over the run, so this term is not being optimised.",
                    measured or {"train.lr": _r(lr * 3)},
                    "the lr that brings the update-to-weight ratio to its healthy range"
                    if measured
                    else "a larger lr is the first thing to try when gradients are small; if the "
                    "loss is noisy or rising, lower it instead.",
                )
            )
    return out


def _lr_evidence_fix(ctx: Context, update: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The lr change the update-to-weight ratio supports, and a note saying what it shows.

    Outside the healthy range the lr is scaled so the largest module's ratio lands on the
    target; inside it the lr is not the cause, and the note says so with the number.
    """
    if update is None:
        return {}, (
            "no update-to-weight ratio was recorded (doctor.enabled); see the other findings "
            "(temperature, data grouping, negatives, lr) for the cause."
        )
    ratio = update["max_ratio"]
    low, high = UPDATE_RATIO_HEALTHY
    if ratio < low or ratio > high:
        direction = "up" if ratio < low else "down"
        return lr_fix(ctx, ratio), (
            f"steps move the weights by {ratio:.2g} of their norm (healthy {low:g}-{high:g}): "
            f"lr {direction} to bring it to ~{UPDATE_RATIO_TARGET:g}."
        )
    return {}, (
        f"the lr is not the cause: steps move the weights by {ratio:.2g} of their norm, inside "
        f"the healthy {low:g}-{high:g}, and no temperature fix applies. Check that rows are "
        "paired with the right partner (read a sample of the manifest) and the other findings."
    )


def rule_zero_gradient(ctx: Context) -> list[Finding]:
    """`zero_gradient`: trainable modules whose gradient norm was always 0."""
    zero = []
    used = {t for o in ctx.cfg.loss.objectives for t in o.towers}
    # A tower's projection only feeds the contrastive embedding: unused by design when no
    # objective names the tower (heads read the tokens / pooled features before it).
    unused = {f"towers.{t}.projection" for t in ctx.cfg.model.towers if t not in used}
    keys = [k for k in ctx.keys("grad_norm/") if k.split("/", 1)[1] not in unused]
    for key in keys:
        g = key.split("/", 1)[1]
        trainable = dict(ctx.series(f"trainable/{g}"))
        norms = [v for s, v in ctx.series(key) if trainable.get(s, 1.0) > 0]
        if norms and max(norms) == 0:
            zero.append(g)
    if not zero:
        return []
    everything = len(zero) == len(keys)
    return [
        Finding(
            "zero_gradient",
            "error" if everything else "warning",
            {"modules": zero, "records": len(ctx.series(keys[0]))},
            "These trainable modules never received a gradient: no weighted loss term depends on them "
            "(a head whose term has weight 0, a tower in no objective, or a detached output).",
            {} if everything else {"train.freeze": sorted(set(ctx.cfg.train.freeze) | set(zero))},
            "freeze or remove them, or give the term that should train them a weight > 0.",
        )
    ]
