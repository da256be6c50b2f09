"""Objective rules: cross-modal alignment (gap negative or shrinking), the balance of
terms in the loss and the gradient, and gradient interference between terms.
"""

from __future__ import annotations

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _r, start_end, term_key
from contrastkit.doctor.rules.thresholds import (
    AUX_SHARE,
    CONTRASTIVE_SHARE,
    GAP_DROP,
    GAP_MIN_PEAK,
    INTERFERENCE_COSINE,
    MATERIAL_GRAD_SHARE,
    SHARED_HEADS_COSINE,
)


def rule_alignment(ctx: Context) -> list[Finding]:
    """`alignment_negative` / `gap_shrinking` from the positive-negative similarity gap."""
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
        for t in ctx.cfg.loss.auxiliary_terms()
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


def _shares(ctx: Context, prefix: str) -> dict[str, float]:
    return {
        k[len(prefix) :]: start_end(ctx.series(k))[1] for k in ctx.keys(prefix) if ctx.series(k)
    }


def rule_balance(ctx: Context) -> list[Finding]:
    """`aux_dominates_loss` / `aux_dominates_gradient`: an auxiliary term drowns the objectives."""
    out: list[Finding] = []
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
    """`gradient_interference`: two terms' gradients disagree on their shared parameters."""
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
        # The lighter term; at equal weights the second (the head added to a working
        # objective), never the first objective by default.
        weaker = b if weights.get(b, 1.0) <= weights.get(a, 1.0) else a
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
