"""Representation rules: collapsed embeddings, a backbone that is frozen or too rigid
for the objective to be learned through it, and a tower module frozen at its random init.
"""

from __future__ import annotations

from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _flat_terms, _r, start_end
from contrastkit.doctor.rules.lr_scale import lr_fix, typical_update
from contrastkit.doctor.rules.thresholds import (
    COLLAPSE_RANK_SHARE,
    COLLAPSE_STD_RATIO,
    RIGID_EMBED_DRIFT,
    RIGID_LOSS_DECREASE,
    RIGID_PARAM_DRIFT,
    UPDATE_RATIO_HEALTHY,
)
from contrastkit.doctor.signals import is_backbone


def _frozen_all_run(ctx: Context, group: str) -> bool:
    """No parameter of `group` was trainable on any record of the run."""
    shares = ctx.series(f"trainable/{group}")
    return bool(shares) and max(v for _, v in shares) == 0


def rule_frozen_at_random_init(ctx: Context) -> list[Finding]:
    """`frozen_at_random_init`: a tower module frozen for the whole run that never loaded
    trained weights (no pretrained encoder, no `model.init_from`), so it computes fixed
    random features. The fit-start record says where the weights came from
    (`pretrained/<module>`, the optimizer monitor)."""
    pretrained: dict[str, float] = {}
    for key in ctx.keys("pretrained/"):
        series = ctx.series(key)
        if series:  # the first fit start: the weights the run began with
            pretrained[key.split("/", 1)[1]] = series[0][1]
    random = sorted(
        g
        for g, share in pretrained.items()
        if g.startswith("towers.") and share == 0 and _frozen_all_run(ctx, g)
    )
    if not random:
        return []
    encoders = [g for g in random if is_backbone(g)]
    keep = [p for p in ctx.cfg.train.freeze if not any(_covers(p, g) for g in random)]
    by_freeze = len(keep) < len(ctx.cfg.train.freeze)
    return [
        Finding(
            "frozen_at_random_init",
            "error" if encoders else "warning",
            {
                "modules": random,
                "pretrained_share": {g: pretrained[g] for g in random},
                "train_freeze": list(ctx.cfg.train.freeze),
                "init_from": ctx.cfg.model.init_from,
            },
            f"{', '.join(random)} {'is' if len(random) == 1 else 'are'} frozen for the whole "
            "run but never loaded trained weights (no pretrained encoder, no model.init_from): "
            "the frozen part computes fixed random features that nothing can align.",
            {"train.freeze": keep} if by_freeze else {},
            "unfreeze it (remove it from train.freeze and from every phase's freeze), or give "
            "it trained weights: a pretrained encoder (e.g. type: minilm / hf_text / hf_vision) "
            "or model.init_from: RUN_DIR.",
        )
    ]


def _covers(prefix: str, group: str) -> bool:
    """The freeze prefix freezes (part of) the module group."""
    return group == prefix or group.startswith(prefix + ".") or prefix.startswith(group + ".")


def rule_collapse(ctx: Context) -> list[Finding]:
    """`collapse`: a tower's embeddings lost their spread or their rank."""
    out = []
    for key in ctx.keys("collapse/"):
        if not key.endswith("/std_ratio"):
            continue
        tower = key.split("/")[1]
        std = start_end(ctx.series(key))[1]
        rank_series = ctx.series(f"collapse/{tower}/effective_rank")
        dims = ctx.series(f"collapse/{tower}/dim")
        dim = dims[-1][1] if dims else 0
        rows = ctx.series(f"collapse/{tower}/rows")
        # The rank of B rows is at most B: a batch of 8 in 384 dimensions cannot reach 2%
        # of 384, so the share is of the dimensions the batch can span.
        span = min(dim, rows[-1][1]) if rows and dim else dim
        rank = start_end(rank_series)[1] if rank_series else float("inf")
        if std >= COLLAPSE_STD_RATIO and rank >= max(2.0, COLLAPSE_RANK_SHARE * span):
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
                *_collapse_fix(ctx),
            )
        )
    return out


def _collapse_fix(ctx: Context) -> tuple[dict[str, Any], str]:
    """Collapse's fix from the measured step size: lr / 10 is the usual answer, but when
    the update-to-weight ratio is inside the healthy range the steps are not what collapsed
    the embeddings (measured: pairs misjoined in the train split collapse at a ratio of
    ~1e-3), and lowering the lr would only slow a run whose data is wrong."""
    update = typical_update(ctx)
    if update is None:  # nothing measured: the usual cause
        return {"train.lr": _r(ctx.cfg.train.lr / 10)}, (
            "a too-large learning rate is the usual cause; also check duplicate_groups."
        )
    ratio = update["max_ratio"]
    low, high = UPDATE_RATIO_HEALTHY
    if ratio > high:
        return lr_fix(ctx, ratio), (
            f"steps move the weights by {ratio:.2g} of their norm (healthy {low:g}-{high:g}): "
            "lower the lr."
        )
    return {}, (
        f"the lr is not the cause: steps move the weights by {ratio:.2g} of their norm "
        f"(healthy {low:g}-{high:g} or below). Embeddings that collapse under sound steps "
        "have nothing to tell apart: check that the train split's rows are paired with the "
        "right partner (read a sample of the manifest), and duplicate_groups / "
        "too_few_negatives / the input findings."
    )


def rule_backbone(ctx: Context) -> list[Finding]:
    """`frozen_backbone` / `rigidity`: the loss is flat while the backbone cannot (or does not) move."""
    out: list[Finding] = []
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
    update = typical_update(ctx)
    # Steps under the healthy band leave a still backbone still, whatever the loss does:
    # a pretrained model's loss can fall a few % from noise or the temperature alone
    # (MiniLM at lr 1e-6: loss -7% in 9 steps, weights moved 5e-5 of their norm).
    tiny = update is not None and update["max_ratio"] < UPDATE_RATIO_HEALTHY[0]
    if (
        drift
        and (flat or tiny)
        and max(drift.values()) < RIGID_PARAM_DRIFT
        and all(v < RIGID_EMBED_DRIFT for v in embed.values())
    ):
        ratio = ctx.series("grad_ratio/backbone_head")
        heads = ctx.cfg.loss.auxiliary_terms()
        phases = [
            {
                "name": "align",
                "until_epoch": 2,
                "freeze": sorted(drift),
                "weights": {t: 0.0 for t in heads},
            },
            {"name": "finetune"},
        ]
        fix: dict[str, Any] = {
            "train.phases": phases,
            "train.lr_scale": {g: 10.0 for g in sorted(drift)},
        }
        note = (
            "first align the new heads with the backbone frozen and competing terms at weight 0, "
            "then fine-tune everything with a larger backbone lr (LP-FT, Kumar et al. 2022)."
        )
        if update and tiny:
            # Every step is tiny (not just the backbone's share of it): the lr itself is the
            # reason nothing moves, whatever the schedule of phases.
            fix = lr_fix(ctx, update["max_ratio"])
            note = (
                f"each step moves the weights by {update['max_ratio']:.2g} of their norm, under "
                f"the healthy {UPDATE_RATIO_HEALTHY[0]:g}: raise the lr before any phase schedule."
            )
        out.append(
            Finding(
                "rigidity",
                "warning",
                {
                    "param_drift": {g: _r(v) for g, v in drift.items()},
                    "embedding_drift": {t: _r(v) for t, v in embed.items()},
                    "backbone_head_grad_ratio": _r(start_end(ratio)[1]) if ratio else None,
                    "update_ratio_max": _r(update["max_ratio"]) if update else None,
                    "flat_terms": flat,
                    "thresholds": [RIGID_PARAM_DRIFT, RIGID_EMBED_DRIFT],
                },
                "The backbone barely moves (weights < 0.1%, embeddings < 1%) while the "
                + (
                    "objective's loss stays flat: the heads cannot reach the objective "
                    "through features that do not change."
                    if flat or update is None
                    else f"steps move the weights by {update['max_ratio']:.2g} of their norm "
                    "(under the healthy band): training leaves the model as it started."
                ),
                fix,
                note,
            )
        )
    return out
