"""Rules: turn recorded signals into findings with numbers, a cause and a config fix.

`diagnose(signals, cfg)` reads the flat records the monitors wrote (see monitors.py and
docs/doctor.md for the keys). Each rule compares the start and end of a series (mean
of the first / last fifth of its records, so one noisy step does not decide) against a
named threshold below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from contrastkit.config import AUX_TERMS, Config
from contrastkit.doctor.findings import Finding, sort_findings
from contrastkit.doctor.signals import is_backbone

# Softmax (CLIP) temperature: CLIP starts at 0.07 and clamps at 0.01 (scale 100). Above
# ~0.5 the logits span < 4 nats for cosines in [-1, 1], so the softmax stays near uniform
# and the loss cannot leave log(B).
TAU_MIN, TAU_MAX = 0.01, 0.5
# SigLIP scale t: below 1 a positive's logit differs from a negative's by < 2 nats.
SIGLIP_T_MIN = 1.0
# SigLIP bias: its equilibrium is near the log prior odds of a positive, ~log(1/B);
# farther than this (nats) and nearly every pair is pushed to one side at the start.
SIGLIP_BIAS_TOLERANCE = 5.0
CLAMP_FRACTION = 0.99  # "at the clamp" = scale >= 99% of max_logit_scale
CLAMP_SHARE = 0.5  # ... for at least half of the records
TOWARD_ONE_DROP = 0.5  # scale fell below half its start ...
TOWARD_ONE_MAX = 5.0  # ... and below 5 (tau > 0.2)
CHANCE_RATIO = 0.95  # softmax loss >= 95% of log(B) at the end = chance (tau=10 gives ~log B - 0.1)
MIN_DECREASE = 0.02  # relative loss decrease below 2% over the run = not decreasing
MIN_RECORDS = 4  # trend rules need this many records
GAP_MIN_PEAK = 0.05  # a gap must have reached 0.05 before "shrinking" means anything
GAP_DROP = 0.5  # ... and lost half of its peak
AUX_SHARE = 0.5  # an auxiliary term above half of the weighted loss ...
CONTRASTIVE_SHARE = 0.3  # ... while the objectives hold less than 30% = domination
# PCGrad (Yu et al. 2020) calls gradients conflicting when their cosine is negative; we
# require a mean below -0.1 over the records so noise around 0 does not fire. Cosines
# near 0 are not flagged: unrelated objectives are nearly orthogonal in high dimension.
INTERFERENCE_COSINE = -0.1
# Two *contrastive* heads on one shared tower that pursue the same alignment agree
# strongly (cosine well above 0.3: both pull matching pairs together). Below that, the
# tower is being pulled toward two different targets and most of each head's update is
# noise for the other -- the "two heads pull one text tower two ways" failure.
SHARED_HEADS_COSINE = 0.3
# An opposing auxiliary term matters only when it carries a material part of the gradient
# on the shared parameters; below 10% it cannot undo the contrastive update.
MATERIAL_GRAD_SHARE = 0.1
COLLAPSE_STD_RATIO = 0.1  # std * sqrt(D) below 0.1 (1 = spread over the sphere)
COLLAPSE_RANK_SHARE = 0.02  # effective rank below 2% of the dimension (and below 2)
RIGID_PARAM_DRIFT = 1e-3  # backbone weights moved < 0.1% (relative L2) ...
RIGID_EMBED_DRIFT = 0.01  # ... and probe embeddings < 1% (1 - cosine) ...
RIGID_LOSS_DECREASE = 0.05  # ... while a term's loss fell < 5%
LR_ZERO = 1e-9  # an AdamW step moves a weight by ~lr: below 1e-9 nothing changes in float32


@dataclass
class Context:
    signals: list[dict[str, Any]]
    cfg: Config
    batch_size: int
    data: list[Finding]

    def series(self, key: str) -> list[tuple[int, float]]:
        out = []
        for r in self.signals:
            v = r.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                out.append((int(r["step"]), float(v)))
        return out

    def keys(self, prefix: str) -> list[str]:
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


# --------------------------------------------------------------------------- optimisation


def rule_loss_nan(ctx: Context) -> list[Finding]:
    bad = [(r["step"], r["nonfinite_steps"]) for r in ctx.signals if r.get("nonfinite_steps")]
    bad += [
        (r["step"], k)
        for r in ctx.signals
        for k, v in r.items()
        if k.startswith("loss/") and isinstance(v, float) and not math.isfinite(v)
    ]
    if not bad:
        return []
    lr = ctx.cfg.train.lr
    fix: dict[str, Any] = {"train.lr": _r(lr / 10), "train.grad_clip": 1.0}
    if ctx.cfg.train.amp == "fp16":
        fix["train.amp"] = "bf16"
    return [
        Finding(
            "loss_nan",
            "error",
            {"first_step": min(s for s, _ in bad), "records": len(bad)},
            "The loss became NaN/Inf (exploding update or overflow), after which nothing is learned.",
            fix,
        )
    ]


def rule_lr_zero(ctx: Context) -> list[Finding]:
    lrs = ctx.series("lr/max")
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
            "Every parameter group has learning rate 0 after warm-up, so no weight changes.",
            fix,
        )
    ]


def rule_optimizer(ctx: Context) -> list[Finding]:
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


# --------------------------------------------------------------------------- temperature


def rule_temperature(ctx: Context) -> list[Finding]:
    out = []
    for i, o in enumerate(ctx.cfg.loss.objectives):
        scale = ctx.series(f"{o.name}/logit_scale")
        key = f"loss.objectives.{i}"
        if o.type == "clip":
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
        elif o.type == "siglip":
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


# --------------------------------------------------------------------------- loss and alignment


def rule_loss_progress(ctx: Context) -> list[Finding]:
    out = []
    b = max(ctx.batch_size, 2)
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
            fix = {}
            if (
                o.type == "clip"
                and (start_end(scale)[1] if scale else 1 / o.temperature) < 1 / TAU_MAX
            ):
                fix = {f"loss.objectives.{i}.temperature": 0.07}
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
                    },
                    f"The {o.type} loss ends at {s1:.3g}, at chance level {chance:.3g}: "
                    "the towers have learned nothing that tells matches from non-matches.",
                    fix,
                    ""
                    if fix
                    else "see the other findings (temperature, data grouping, lr) for the cause.",
                )
            )
    terms = [o.name for o in ctx.cfg.loss.objectives] + [
        t for t in AUX_TERMS if f"loss/{t}" in ctx.keys("loss/")
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
                    {"train.lr": _r(lr * 3)},
                    "a larger lr is the first thing to try when gradients are small; if the loss is "
                    "noisy or rising, lower it instead.",
                )
            )
    return out


def _active(ctx: Context, term: str) -> list[tuple[int, float]]:
    """A term's loss at the records where its weight was > 0."""
    weights = dict(ctx.series(f"weight/{term}"))
    return [(s, v) for s, v in ctx.series(f"loss/{term}") if weights.get(s, 1.0) > 0]


def rule_alignment(ctx: Context) -> list[Finding]:
    gap = ctx.series("align/gap")
    if not gap:
        return []
    out = []
    s0, s1 = start_end(gap)
    peak_step, peak = max(gap, key=lambda sv: sv[1])
    ev = {
        "gap_start": _r(s0),
        "gap_end": _r(s1),
        "gap_peak": _r(peak),
        "peak_step": peak_step,
        "steps": [gap[0][0], gap[-1][0]],
    }
    for k in ("pos_sim", "neg_sim", "batch_r1"):
        series = ctx.series(f"align/{k}")
        if series:
            ev[f"{k}_end"] = _r(start_end(series)[1])
    aux = {
        term_key(ctx.cfg, t): _r(ctx.cfg.loss.term_weights()[t] / 2)
        for t in AUX_TERMS
        if t in ctx.cfg.loss.term_weights()
    }
    if s1 < 0:
        out.append(
            Finding(
                "alignment_negative",
                "warning",
                ev,
                "Matched pairs end less similar than unmatched ones: the towers are anti-aligned, "
                "usually from mis-grouped rows or another objective pulling a shared tower elsewhere.",
                aux,
                "check the data doctor's duplicate_groups and the gradient_interference finding.",
            )
        )
    elif peak > GAP_MIN_PEAK and s1 < (1 - GAP_DROP) * peak and peak_step < gap[-1][0]:
        out.append(
            Finding(
                "gap_shrinking",
                "warning",
                ev,
                "The positive-negative similarity gap peaked and then lost over half of its size: "
                "alignment is being unlearned, typically as auxiliary terms take over the shared towers.",
                aux or {"train.lr": _r(ctx.cfg.train.lr / 3)},
            )
        )
    return out


# --------------------------------------------------------------------------- multitask balance


def _shares(ctx: Context, prefix: str) -> dict[str, float]:
    return {
        k[len(prefix) :]: start_end(ctx.series(k))[1] for k in ctx.keys(prefix) if ctx.series(k)
    }


def rule_balance(ctx: Context) -> list[Finding]:
    out = []
    objectives = {o.name for o in ctx.cfg.loss.objectives}
    if not objectives:  # e.g. classifier pre-training: there is nothing to drown
        return out
    weights = ctx.cfg.loss.term_weights()
    for prefix, code, what in (
        ("share/", "aux_dominates_loss", "weighted loss"),
        ("grad_share/", "aux_dominates_gradient", "gradient on shared parameters"),
    ):
        shares = _shares(ctx, prefix)
        contrastive = sum(v for k, v in shares.items() if k in objectives)
        for term, share in shares.items():
            if term in objectives or share <= AUX_SHARE or contrastive >= CONTRASTIVE_SHARE:
                continue
            w = weights.get(term, 1.0)
            target = (
                w * max(contrastive, 0.05) / share
            )  # weight that makes it equal to the objectives
            out.append(
                Finding(
                    code,
                    "warning",
                    {
                        "term": term,
                        "share": _r(share),
                        "contrastive_share": _r(contrastive),
                        "weight": w,
                        "shares": {k: _r(v) for k, v in shares.items()},
                    },
                    f"The {term} term holds {share:.0%} of the {what} and the contrastive objectives "
                    f"{contrastive:.0%}, so the shared towers learn {term}, not alignment.",
                    {term_key(ctx.cfg, term): _r(target, 2)},
                    "or warm up with this term's weight at 0 in a first train.phases entry.",
                )
            )
    return out


def rule_interference(ctx: Context) -> list[Finding]:
    out = []
    weights = ctx.cfg.loss.term_weights()
    objectives = {o.name for o in ctx.cfg.loss.objectives}
    for key in ctx.keys("grad_cos/"):
        series = ctx.series(key)
        mean = sum(v for _, v in series) / len(series)
        a, b = key[len("grad_cos/") :].split("|")
        both_contrastive = a in objectives and b in objectives
        if mean >= (SHARED_HEADS_COSINE if both_contrastive else INTERFERENCE_COSINE):
            continue
        minor = min(_shares(ctx, "grad_share/").get(t, 1.0) for t in (a, b))
        if not both_contrastive and minor < MATERIAL_GRAD_SHARE:
            continue  # a term with a sliver of the gradient cannot undo the other's update
        weaker = min((a, b), key=lambda t: weights.get(t, 1.0))
        out.append(
            Finding(
                "gradient_interference",
                "warning",
                {
                    "terms": [a, b],
                    "mean_cosine": _r(mean),
                    "min_cosine": _r(min(v for _, v in series)),
                    "share_negative": _r(sum(v < 0 for _, v in series) / len(series)),
                    "records": len(series),
                    "steps": [series[0][0], series[-1][0]],
                },
                (
                    f"The contrastive heads {a} and {b} pull their shared tower toward "
                    f"different targets (mean gradient cosine {mean:.2f}; heads with one "
                    f"target agree above {SHARED_HEADS_COSINE})."
                    if both_contrastive
                    else f"The gradients of {a} and {b} on their shared parameters point in "
                    f"opposite directions (mean cosine {mean:.2f}), so each undoes the "
                    "other's update."
                ),
                {term_key(ctx.cfg, weaker): _r(weights.get(weaker, 1.0) / 2)},
                "or give the second head its own tower (streams instead of share), or train "
                "them in turn with train.phases weights.",
            )
        )
    return out


# --------------------------------------------------------------------------- representation


def rule_collapse(ctx: Context) -> list[Finding]:
    out = []
    for key in ctx.keys("collapse/"):
        if not key.endswith("/std_ratio"):
            continue
        tower = key.split("/")[1]
        std = start_end(ctx.series(key))[1]
        rank_series = ctx.series(f"collapse/{tower}/effective_rank")
        dims = ctx.series(f"collapse/{tower}/dim")
        dim = dims[-1][1] if dims else 0
        rank = start_end(rank_series)[1] if rank_series else float("inf")
        if std >= COLLAPSE_STD_RATIO and rank >= max(2.0, COLLAPSE_RANK_SHARE * dim):
            continue
        out.append(
            Finding(
                "collapse",
                "error",
                {
                    "tower": tower,
                    "std_ratio": _r(std),
                    "effective_rank": _r(rank),
                    "dim": dim,
                    "step": ctx.series(key)[-1][0],
                },
                f"The {tower} embeddings have collapsed (spread {std:.3g} of an even spread, "
                f"effective rank {rank:.3g}), so every input maps to nearly the same point.",
                {"train.lr": _r(ctx.cfg.train.lr / 10)},
                "a too-large learning rate is the usual cause; also check duplicate_groups.",
            )
        )
    return out


def rule_backbone(ctx: Context) -> list[Finding]:
    out = []
    groups = sorted(
        {k.split("/", 1)[1] for k in ctx.keys("trainable/")}
        | {k.split("/", 1)[1] for k in ctx.keys("param_drift/")}
    )
    backbone = [g for g in groups if is_backbone(g)]
    if not backbone:
        return out
    flat = _flat_terms(ctx, RIGID_LOSS_DECREASE)
    frozen = [
        g
        for g in backbone
        if ctx.series(f"trainable/{g}") and max(v for _, v in ctx.series(f"trainable/{g}")) == 0
    ]
    if frozen and flat:
        out.append(
            Finding(
                "frozen_backbone",
                "warning",
                {"frozen": frozen, "flat_terms": flat},
                "The backbone is frozen for the whole run and the loss does not improve, so the "
                "frozen features cannot express what the objective needs.",
                {
                    "train.freeze": [p for p in ctx.cfg.train.freeze if p not in frozen],
                    "train.phases": [
                        {"name": "heads", "until_epoch": 1, "freeze": frozen},
                        {"name": "all", "unfreeze": frozen},
                    ],
                },
            )
        )
    moving = [g for g in backbone if g not in frozen]
    drift = {
        g: start_end(ctx.series(f"param_drift/{g}"))[1]
        for g in moving
        if ctx.series(f"param_drift/{g}")
    }
    embed = {
        k.split("/")[1]: start_end(ctx.series(k))[1]
        for k in ctx.keys("embed_drift/")
        if k.endswith("/drift")
    }
    if (
        drift
        and flat
        and max(drift.values()) < RIGID_PARAM_DRIFT
        and all(v < RIGID_EMBED_DRIFT for v in embed.values())
    ):
        ratio = ctx.series("grad_ratio/backbone_head")
        heads = [t for t in AUX_TERMS if t in ctx.cfg.loss.term_weights()]
        phases = [
            {
                "name": "align",
                "until_epoch": 2,
                "freeze": sorted(drift),
                "weights": {t: 0.0 for t in heads},
            },
            {"name": "finetune"},
        ]
        out.append(
            Finding(
                "rigidity",
                "warning",
                {
                    "param_drift": {g: _r(v) for g, v in drift.items()},
                    "embedding_drift": {t: _r(v) for t, v in embed.items()},
                    "backbone_head_grad_ratio": _r(start_end(ratio)[1]) if ratio else None,
                    "flat_terms": flat,
                    "thresholds": [RIGID_PARAM_DRIFT, RIGID_EMBED_DRIFT],
                },
                "The pretrained backbone barely moves (weights < 0.1%, embeddings < 1%) while the "
                "new objective's loss stays flat: the heads cannot reach the objective through features that do not change.",
                {"train.phases": phases, "train.lr_scale": {g: 10.0 for g in sorted(drift)}},
                "first align the new heads with the backbone frozen and competing terms at weight 0, "
                "then fine-tune everything with a larger backbone lr (LP-FT, Kumar et al. 2022).",
            )
        )
    return out


def _flat_terms(ctx: Context, threshold: float) -> list[str]:
    flat = []
    for term in [o.name for o in ctx.cfg.loss.objectives] + list(AUX_TERMS):
        values = _active(ctx, term)
        if len(values) >= 2:
            s0, s1 = start_end(values)
            if s0 > 0 and (s0 - s1) / s0 < threshold:
                flat.append(term)
    return flat


def rule_zero_gradient(ctx: Context) -> list[Finding]:
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


RULES: tuple[Callable[[Context], list[Finding]], ...] = (
    rule_loss_nan,
    rule_lr_zero,
    rule_optimizer,
    rule_temperature,
    rule_loss_progress,
    rule_alignment,
    rule_balance,
    rule_interference,
    rule_collapse,
    rule_backbone,
    rule_zero_gradient,
)


def diagnose(
    signals: list[dict[str, Any]],
    cfg: Config,
    *,
    batch_size: int | None = None,
    data_findings: Iterable[Finding] = (),
) -> list[Finding]:
    """Findings for a run, most important first.

    Args:
        signals: the monitors' records (`signals.jsonl` lines), any order.
        cfg: the run config.
        batch_size: global batch size (default: recorded at fit start, else
            data.batch_size * train.accumulate).
        data_findings: findings of the data doctor, merged in.
    """
    signals = sorted(signals, key=lambda r: r.get("step", 0))
    recorded = [r["batch_size"] for r in signals if r.get("batch_size")]
    b = batch_size or (recorded[0] if recorded else cfg.data.batch_size * cfg.train.accumulate)
    ctx = Context(signals, cfg, int(b), list(data_findings))
    findings = list(ctx.data)
    for rule in RULES:
        findings += rule(ctx)
    return sort_findings(_demote_explained(findings))


# Symptoms (the loss does not move, no alignment) that any of these causes explains: when
# a cause is found, the symptom stays in the list but below it, so the top finding is the
# one whose fix helps.
SYMPTOMS = ("loss_at_chance", "loss_not_decreasing", "alignment_negative", "gap_shrinking")
CAUSES = (
    "loss_nan",
    "lr_zero",
    "params_not_in_optimizer",
    "duplicate_groups",
    "temperature_out_of_range",
    "zero_gradient",
    "frozen_backbone",
    "collapse",
    "aux_dominates_loss",
    "aux_dominates_gradient",
    "gradient_interference",
    "rigidity",
)


def _demote_explained(findings: list[Finding]) -> list[Finding]:
    causes = [f.code for f in findings if f.code in CAUSES and f.severity != "info"]
    if not causes:
        return findings
    for f in findings:
        if f.code in SYMPTOMS and f.severity == "error":
            f.severity = "warning"
            f.evidence = {**f.evidence, "explained_by": causes}
    return findings
