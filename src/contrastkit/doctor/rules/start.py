"""Rules that compare a run with where it started: `worse_than_start` (the trained model
scores below the untrained one on validation), `pretrained_start_at_chance` (towers of one
pretrained encoder retrieve at chance before training), `init_worse_than_random` (the weights of
`model.init_from` score below random weights of the same architecture) and
`temperature_frozen` (a learnable temperature that training never moved).

`eval_records` turns the evaluation lines of `metrics.jsonl` (the at-start evaluation,
logged at step 0 with the `at_start/` prefix, the random-weights reference with
`at_random/`, and each periodic validation) into signal records, so these rules read
them like any monitor's.
"""

from __future__ import annotations

from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.baselines import last_values, pairs_near_chance
from contrastkit.doctor.rules.context import Context, _r
from contrastkit.losses.clip import ClipObjective
from contrastkit.pairing import select_metric

AT_START = "at_start/"
AT_RANDOM = "at_random/"
# Retrieval metrics of a few hundred validation queries move by about 1/N per query that
# changes rank; a drop must exceed both this absolute margin and this share of the start
# value to be more than evaluation noise.
WORSE_ABS = 0.005
WORSE_REL = 0.02
# A learnable log-temperature that moved less than this share of its value over at least
# FROZEN_MIN_STEPS steps is pinned by its learning rate, not settled: at lr 5e-5 AdamW
# moves it ~5e-5 per step (observed 14.28 -> 14.29 over an epoch), at 1e-3 ~20x more.
FROZEN_REL = 0.005
FROZEN_MIN_STEPS = 100
# AdamW moves a parameter by at most about its lr per step, so the sum of the
# temperature's lr over the steps is how far its log could have gone. With room for 0.1
# (a 10% change of scale) a temperature that stayed put sat at its optimum (its gradient
# changed sign), which is no fault: examples/angio.yaml at lr 2e-3 goes 14.29 -> 14.06
# -> 14.33. Below that room, the lr may be what held it.
FROZEN_ROOM = 0.1
# Encoder types that load pretrained weights (their projections should start as identity).
PRETRAINED_TYPES = ("minilm", "hf_text", "hf_vision", "hf_clip")


def eval_records(metrics: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
    """Signal records for the evaluation lines of `metrics.jsonl` (monitor `eval`)."""
    splits = {s for s in (cfg.data.val_split, *cfg.eval.splits) if s}
    # train_sample/: the fixed train rows scored at each validation (eval/train_sample.py).
    prefixes = (AT_START, AT_RANDOM, "train_sample/", *(f"{s}/" for s in splits))
    out = []
    for rec in metrics:
        values = {k: v for k, v in rec.items() if k.startswith(prefixes)}
        if values:
            out.append({"step": rec.get("step", 0), "monitor": "eval", **values})
    return out


def _worse(a: float, b: float, higher_is_better: bool) -> bool:
    """`a` is worse than `b` by more than evaluation noise (WORSE_ABS and WORSE_REL)."""
    drop = (b - a) if higher_is_better else (a - b)
    return drop > max(WORSE_ABS, WORSE_REL * abs(b))


def _pretrained_towers(cfg: Any) -> list[str]:
    """Towers whose (one) encoder loads pretrained weights and whose projection is not
    told to start as the identity / be absent."""
    out = []
    for name, tower in cfg.model.towers.items():
        pretrained = any(e.type in PRETRAINED_TYPES or e.pretrained for e in tower.streams.values())
        if pretrained and tower.projection.init == "random" and tower.projection.type != "none":
            out.append(name)
    return out


def rule_worse_than_start(ctx: Context) -> list[Finding]:
    """`worse_than_start`: the selection metric ended worse than the zero-shot model scored before training."""
    key = select_metric(ctx.cfg)
    if key is None:
        return []
    start, end = ctx.series(AT_START + key), ctx.series(key)
    end = [(s, v) for s, v in end if s > 0]  # periodic validations after training began
    if not start or not end:
        return []
    s0, (step, s1) = start[0][1], end[-1]
    if not _worse(s1, s0, ctx.cfg.train.select_mode == "max"):
        return []
    train = ctx.cfg.train
    fix: dict[str, Any] = {}
    causes = []
    towers = _pretrained_towers(ctx.cfg)
    if towers:
        causes.append(
            f"randomly initialised projections on pretrained towers {towers} replace the "
            "pretrained embedding space"
        )
        for t in towers:
            fix[f"model.towers.{t}.projection.init"] = "identity"
    if train.lr > FINE_TUNE_LR_MAX and _any_pretrained(ctx.cfg):
        causes.append(f"train.lr {train.lr:g} is a from-scratch rate; fine-tuning uses ~2e-5-1e-4")
        fix["train.lr"] = 5e-5
    if step < FEW_STEPS:
        causes.append(f"only {step} steps: too few to recover from a disruptive start")
    if not causes:
        causes.append("the learning rate, too few steps, or training data unlike the evaluation")
    return [
        Finding(
            "worse_than_start",
            "error",
            {
                "metric": key,
                "at_start": _r(s0),
                "final": _r(s1),
                "step": step,
                "towers_with_random_projection": towers,
            },
            f"Training made {key} worse than the untrained model ({_r(s0)} at start, "
            f"{_r(s1)} at step {step}); likely: " + "; ".join(causes) + ".",
            fix,
            "Keep the pretrained space: leave projection.type/init at auto (none or identity) "
            "on pretrained towers, fine-tune at a small lr, and train long enough.",
        )
    ]


def rule_init_worse_than_random(ctx: Context) -> list[Finding]:
    """`init_worse_than_random`: `model.init_from`'s weights score below random weights of
    the same architecture before training (the reference `at_random/` evaluation)."""
    key = select_metric(ctx.cfg)
    if key is None:
        return []
    init, rand = ctx.series(AT_START + key), ctx.series(AT_RANDOM + key)
    if not init or not rand:
        return []
    higher = ctx.cfg.train.select_mode == "max"
    if not _worse(init[0][1], rand[0][1], higher):
        return []
    end = [v for s, v in ctx.series(key) if s > 0]
    evidence: dict[str, Any] = {
        "metric": key,
        "init_from": ctx.cfg.model.init_from,
        "init_at_start": _r(init[0][1]),
        "random_at_start": _r(rand[0][1]),
    }
    ended = ""
    if end:
        evidence["final"] = _r(end[-1])
        if _worse(end[-1], rand[0][1], higher):
            ended = f", and training from it ended at {_r(end[-1])}, still below random weights"
    return [
        Finding(
            "init_worse_than_random",
            "warning",
            evidence,
            f"The weights of model.init_from score {_r(init[0][1])} on {key} before training, "
            f"random weights of the same model {_r(rand[0][1])}{ended}: the pretraining kept "
            "only what its own objective needed (a classifier's features keep its classes "
            "and drop what tells the items of one class apart).",
            {"model.init_from": None},
            "or keep the init and give the new objective room: train.lr_scale on the "
            "backbone, more epochs, or init_from a checkpoint from earlier in pretraining",
        )
    ]


# Above this, a learning rate is a from-scratch rate for a pretrained transformer
# (sentence-transformers and BERT fine-tunes use 2e-5 .. 1e-4).
FINE_TUNE_LR_MAX = 3e-4
# Fewer steps than this cannot be told apart from a bad start.
FEW_STEPS = 50


def _any_pretrained(cfg: Any) -> bool:
    return any(
        e.type in PRETRAINED_TYPES or e.pretrained
        for t in cfg.model.towers.values()
        for e in t.streams.values()
    )


def lr_sum(lrs: list[tuple[int, float]], scale: list[tuple[int, float]]) -> float | None:
    """Sum of the lr over the steps the scale series spans (each logged lr holds until the
    next one); None without lr records."""
    if not lrs:
        return None
    start, end = scale[0][0], scale[-1][0]
    total = 0.0
    for (step, lr), nxt in zip(lrs, [*lrs[1:], (end, 0.0)], strict=True):
        lo, hi = max(step, start), min(nxt[0], end)
        total += lr * max(0, hi - lo)
    return total


def rule_temperature_frozen(ctx: Context) -> list[Finding]:
    """`temperature_frozen`: a learnable CLIP temperature barely moved over many steps."""
    out = []
    for i, o in enumerate(ctx.cfg.loss.objectives):
        if not isinstance(o, ClipObjective) or not o.learnable_temperature:
            continue
        scale = ctx.series(f"{o.name}/logit_scale")
        if len(scale) < 2 or scale[-1][0] - scale[0][0] < FROZEN_MIN_STEPS:
            continue
        first, last = scale[0][1], scale[-1][1]
        if first <= 0 or abs(last - first) / first >= FROZEN_REL:
            continue
        room = lr_sum(ctx.series("lr/temperature") or ctx.series("lr/max"), scale)
        if room is not None and room >= FROZEN_ROOM:
            continue
        current = ctx.cfg.train.new_params_lr_scale
        out.append(
            Finding(
                "temperature_frozen",
                "warning",
                {
                    "objective": o.name,
                    "logit_scale_start": _r(first),
                    "logit_scale_end": _r(last),
                    "steps": [scale[0][0], scale[-1][0]],
                    "lr": ctx.cfg.train.lr,
                    "new_params_lr_scale": current,
                    "max_log_travel": None if room is None else _r(room),
                },
                f"The learnable temperature of {o.name} did not move over "
                f"{scale[-1][0] - scale[0][0]} steps ({_r(first)} -> {_r(last)}): its learning "
                "rate is too small for a scalar that must travel ~1 in log space.",
                {"train.new_params_lr_scale": max(20.0, 2 * (current or 1.0))},
                f"or fix it on purpose: loss.objectives.{i}.learnable_temperature: false",
            )
        )
    return out


def _one_source(cfg: Any, towers: list[str]) -> bool:
    """Every tower is one stream of the same pretrained encoder (type and weights): a
    siamese MiniLM, or the two towers of one CLIP checkpoint. Their untrained embeddings
    already live in one space, so the start must retrieve above chance. (Two unrelated
    pretrained encoders, MiniLM text with a ViT, start unaligned, at chance by design.)"""
    sources = set()
    for t in towers:
        tower = cfg.model.towers.get(t)
        if tower is None or tower.share is not None or len(tower.streams) != 1:
            return False
        enc = next(iter(tower.streams.values()))
        if enc.type not in PRETRAINED_TYPES and not enc.pretrained:
            return False
        sources.add("hf_clip" if enc.type == "hf_clip" else (enc.type, enc.pretrained))
    return len(sources) == 1


def rule_pretrained_start_at_chance(ctx: Context) -> list[Finding]:
    """`pretrained_start_at_chance`: before any step, a pair of towers built on one
    pretrained encoder retrieves no better than chance on validation."""
    val = ctx.cfg.data.val_split
    if not val:
        return []
    _, values = last_values(ctx, f"{AT_START}{val}/")
    out = []
    for directions in pairs_near_chance(values):
        towers = sorted({t for x in directions for t in x["direction"].split("_to_")})
        if len(towers) != 2 or not _one_source(ctx.cfg, towers):
            continue
        random = [t for t in _pretrained_towers(ctx.cfg) if t in towers]
        fix = {f"model.towers.{t}.projection.init": "identity" for t in random}
        said = ", ".join(f"{x['direction']} {x['R@1']} (chance {x['chance']})" for x in directions)
        out.append(
            Finding(
                "pretrained_start_at_chance",
                "error",
                {"towers": towers, "at_start": directions, "random_projections": random},
                f"Before training, towers {towers} share one pretrained encoder yet retrieve "
                f"at chance on {val} ({said}): what the encoder knows is lost between it and "
                "the embedding"
                + (
                    f": randomly initialised projections on {random} replace its space."
                    if random
                    else " (a projection, pooling, tokenizer or max_length that is not the "
                    "encoder's own, or the towers reading other columns than intended)."
                ),
                fix,
                "projection.type: none, or init: identity, on pretrained towers keeps step 0 "
                "equal to the pretrained model (docs/models.md).",
            )
        )
    return out
