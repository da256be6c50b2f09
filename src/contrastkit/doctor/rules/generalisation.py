"""`not_generalising`: the fixed train sample's pairs are retrieved (R@1 well above its
chance) while validation stays near chance (`eval/train_sample.py` records both at every
evaluation, each with its chance level, 1 / gallery size). `pairs_not_learned`: neither
is, at the end of the run: the training pairs themselves were not learned.

Validation near chance alone is `metric_at_baseline`; with the train sample learned the
cause is narrower: the model learns what the training pairs say, and that does not carry
over to validation. The cause is told apart by the validation curve:

- validation **never** rose above chance at any evaluation while the train sample did:
  the validation pairs do not mean what the training pairs mean: pairs misjoined in the
  validation split (a join on the wrong key), or train and validation from different
  distributions. When *every* split is misjoined the model can still memorise the
  training pairs (the train loss falls, the train sample rises slowly) and validation
  stays at chance; the finding names that too;
- validation rose above chance, then fell back while the train sample kept rising:
  memorisation of the train split (most likely a small one; `train_sample/split_rows`).

When the train sample is at chance too, nothing was learned from the pairs. Every known
reason for that (lr, temperature, inputs without signal, frozen random towers, too few
steps, ...) has its own finding that explains this one (rules/causes.py), so
`pairs_not_learned` comes out on top only when none of them is found: healthy steps on
inputs with signal that still link nothing, which is what pairs joined on the wrong key
in every split look like before the model starts memorising them.
"""

from __future__ import annotations

import math
from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.baselines import last_values, near_chance
from contrastkit.doctor.rules.context import Context, _r, start_end
from contrastkit.doctor.rules.lr_scale import typical_update

TRAIN = "train_sample/"
# The train sample counts as learned when a tower pair's R@1, pooled over its directions
# (queries-weighted), is at least this multiple of its chance *and* LEARNED_Z standard
# errors above it: on 32 groups (64 queries over both directions, chance 0.031) that is
# R@1 >= 0.094 and z >= 3, which luck gives with probability ~1e-3. The tiny digits run
# with its val split misjoined ends at 0.125 (ratio 4, z 4.3).
LEARNED_RATIO = 3.0
LEARNED_Z = 3.0
# ... and its lift over chance (R@1 / chance, pooled) is at least this multiple of
# validation's. Near-chance validation alone is noisy early in a healthy run: the tiny
# digits run's first evaluation has val at 2.0x chance (within noise of it) and the train
# sample at 4x; misjoined val pairs sit at 0.8x.
LIFT_GAP = 3.0
# A train split under this many rows is small enough to memorise in a few epochs with
# any encoder (the tiny digits run memorises its 400 rows in 3 epochs).
SMALL_TRAIN_ROWS = 2000
# Weight decay suggested against memorisation: this multiple of the run's (AdamW's decay
# is a pull toward 0 proportional to lr x decay; x4 is a clear change without stopping
# learning).
DECAY_FACTOR = 4.0


def _learned(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tower pairs whose train-sample R@1, pooled over their directions, is learned
    (`LEARNED_RATIO` x chance and `LEARNED_Z` standard errors above it)."""
    pairs: dict[frozenset[str], list[dict[str, Any]]] = {}
    for x in rows:
        q, _, g = x["direction"].partition("_to_")
        pairs.setdefault(frozenset((q, g)), []).append(x)
    out = []
    for members in pairs.values():
        n = sum(x["train_queries"] or 1.0 for x in members)
        r1 = sum(x["train_sample_R@1"] * (x["train_queries"] or 1.0) for x in members) / n
        p = sum(x["train_sample_chance"] * (x["train_queries"] or 1.0) for x in members) / n
        if not (0 < p < 1) or r1 < LEARNED_RATIO * p:
            continue
        if (r1 - p) / math.sqrt(p * (1 - p) / n) >= LEARNED_Z:
            label = " / ".join(x["direction"] for x in members)
            out.append({"directions": label, "R@1": _r(r1), "chance": _r(p), "queries": n})
    return out


def _val_lift(rows: list[dict[str, Any]]) -> float:
    """Validation's R@1 over chance, pooled over every direction (queries-weighted)."""
    n = sum(x["val_queries"] or 1.0 for x in rows)
    r1 = sum(x["val_R@1"] * (x["val_queries"] or 1.0) for x in rows) / n
    p = sum(x["val_chance"] * (x["val_queries"] or 1.0) for x in rows) / n
    return r1 / p if p > 0 else float("inf")


def _val_rose(ctx: Context, val: str, directions: list[str], before: int) -> tuple[int, float]:
    """The evaluation (step, R@1) at which validation was above chance, best first;
    (-1, nan) when it never was."""
    best = (-1, float("nan"))
    for r in ctx.signals:
        if r.get("monitor") != "eval" or r.get("step", 0) <= 0 or r["step"] >= before:
            continue
        for d in directions:
            r1, p = r.get(f"{val}/{d}/R@1"), r.get(f"{val}/{d}/chance")
            if r1 is None or p is None:
                continue
            above = not near_chance(r1, p, r.get(f"{val}/{d}/num_queries"))
            if above and (best[0] < 0 or r1 > best[1]):
                best = (int(r["step"]), float(r1))
    return best


def _directions(train: dict[str, float], val: dict[str, float]) -> list[dict[str, Any]]:
    """Evidence per direction evaluated on both the train sample and validation."""
    out = []
    for key in sorted(train):
        if not key.endswith("/R@1") or key.count("/") != 1:
            continue
        d = key[: -len("/R@1")]
        if f"{d}/chance" not in train or f"{d}/R@1" not in val or f"{d}/chance" not in val:
            continue
        out.append(
            {
                "direction": d,
                "train_sample_R@1": _r(train[key]),
                "train_sample_chance": _r(train[f"{d}/chance"]),
                "train_queries": train.get(f"{d}/num_queries"),
                "val_R@1": _r(val[f"{d}/R@1"]),
                "val_chance": _r(val[f"{d}/chance"]),
                "val_queries": val.get(f"{d}/num_queries"),
            }
        )
    return out


def _causes(
    ctx: Context, rose: tuple[int, float], rows: float | None
) -> tuple[list[str], dict[str, Any]]:
    """Causes, best supported first, and the config fix of memorisation when it leads."""
    small = rows is not None and rows < SMALL_TRAIN_ROWS
    size = f"only {int(rows)} train rows" if rows is not None else "the train split"
    memorise = (
        f"memorising the train split ({size}): the model fits its pairs and stops generalising"
    )
    misjoin = (
        "pairs misjoined in the validation split (a join on the wrong key: its captions "
        "describe other items), or in every split, when the model memorises the train "
        "split's wrong pairs while the loss falls"
    )
    shift = "train and validation drawn from different distributions (sources, sites, time)"
    loss = ctx.series("loss/total")
    if len(loss) >= 2:
        s0, s1 = start_end(loss)
        misjoin += f" (train loss {_r(s0)} -> {_r(s1)})"
    if rose[0] >= 0:  # validation learned something, then lost it: overfitting
        decay = ctx.cfg.train.weight_decay
        fix = {"train.weight_decay": _r(max(decay, 0.01) * DECAY_FACTOR)}
        return [
            memorise + f"; validation peaked at R@1 {_r(rose[1])} at step {rose[0]}",
            shift,
            misjoin,
        ], fix
    causes = [misjoin, shift]
    if small:
        causes.append(memorise)
    return causes, {}


def rule_not_generalising(ctx: Context) -> list[Finding]:
    """`not_generalising`: the train sample's pairs are learned while validation stays
    near chance."""
    val = ctx.cfg.data.val_split
    if not val:
        return []
    step, train = last_values(ctx, TRAIN)
    vstep, values = last_values(ctx, f"{val}/")
    if step < 0 or vstep != step:
        return []
    rows = _directions(train, values)
    if not rows:
        return []
    learned = _learned(rows)
    at_chance = all(near_chance(x["val_R@1"], x["val_chance"], x["val_queries"]) for x in rows)
    learned = [x for x in learned if x["R@1"] / x["chance"] >= LIFT_GAP * _val_lift(rows)]
    if not learned or not at_chance:
        return []
    rose = _val_rose(ctx, val, [x["direction"] for x in rows], step)
    split_rows = train.get("split_rows")
    causes, fix = _causes(ctx, rose, split_rows)
    best = max(learned, key=lambda x: x["R@1"] / x["chance"])
    val_r1 = ", ".join(f"{x['direction']} {x['val_R@1']} (chance {x['val_chance']})" for x in rows)
    evidence = {
        "step": step,
        "directions": rows,
        "train_sample_pooled": learned,
        "train_split_rows": split_rows,
        "train_sample_groups": train.get("groups"),
        "val_peak": {"step": rose[0], "R@1": rose[1]} if rose[0] >= 0 else None,
    }
    return [
        Finding(
            "not_generalising",
            "error",
            evidence,
            f"At step {step} the model retrieves its training pairs ({best['directions']} "
            f"R@1 {best['R@1']} on a fixed train sample, chance {best['chance']}) but not the "
            f"{val} pairs ({val_r1}). "
            "Likely: " + "; ".join(causes) + ".",
            fix,
            "Check the join: print 20 random rows of each split with their media and text "
            "side by side (the same `group`, the same item?); re-run the join that built the "
            "manifest on its key and count rows whose text does not describe their media. "
            "If the pairs are right, compare the splits' sources, and add training rows.",
        )
    ]


def rule_pairs_not_learned(ctx: Context) -> list[Finding]:
    """`pairs_not_learned`: at the last evaluation both the train sample and validation
    are near chance in every direction."""
    val = ctx.cfg.data.val_split
    if not val:
        return []
    step, train = last_values(ctx, TRAIN)
    vstep, values = last_values(ctx, f"{val}/")
    if step <= 0 or vstep != step:
        return []
    rows = _directions(train, values)
    if not rows:
        return []
    train_flat = all(
        near_chance(x["train_sample_R@1"], x["train_sample_chance"], x["train_queries"])
        for x in rows
    )
    val_flat = all(near_chance(x["val_R@1"], x["val_chance"], x["val_queries"]) for x in rows)
    if not (train_flat and val_flat):
        return []
    update = typical_update(ctx)
    loss = ctx.series("loss/total")
    s0, s1 = start_end(loss) if len(loss) >= 2 else (float("nan"), float("nan"))
    evidence: dict[str, Any] = {
        "step": step,
        "directions": rows,
        "train_sample_groups": train.get("groups"),
        "loss_start": _r(s0),
        "loss_end": _r(s1),
        "update_ratio_max": _r(update["max_ratio"]) if update else None,
    }
    said = ", ".join(
        f"{x['direction']} {x['train_sample_R@1']} / {x['val_R@1']} (chance "
        f"{x['train_sample_chance']} / {x['val_chance']})"
        for x in rows
    )
    steps = (
        f", with steps that move the weights by {update['max_ratio']:.2g} of their norm"
        if update
        else ""
    )
    siglip = any(o.type == "siglip" for o in ctx.cfg.loss.objectives)
    early = (
        " A SigLIP run can also sit here for its first hundreds of steps: the bias alone "
        "lowers the loss while the embeddings gather at one point (examples/digits_siglip "
        "at 72 steps: image effective rank 1.04, loss 22 -> 17.8); if the run is that "
        "young, train longer before suspecting the data."
        if siglip
        else ""
    )
    return [
        Finding(
            "pairs_not_learned",
            "error",
            evidence,
            f"After {step} steps{steps}, neither the training pairs (fixed train sample) nor "
            f"the {val} pairs are retrieved above chance (R@1 train / {val}: {said}). No "
            "optimisation, temperature or input finding explains it, so the pairs themselves "
            "are suspect: rows joined to the wrong partner in every split (a join on the "
            "wrong key or an offset index), or two sides that share no information." + early,
            {},
            "Check the join: print 20 random training rows with their media and text side by "
            "side (does the text describe that item?); re-run the join that built the "
            "manifest on its key. A model that cannot learn correct pairs at all shows up "
            "as another finding (lr, temperature, inputs).",
        )
    ]
