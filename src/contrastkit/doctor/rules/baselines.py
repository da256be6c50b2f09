"""`metric_at_baseline`: a validation metric that is not clearly above what a model that
ignores its input scores (the baselines of `eval/baselines.py`, recorded beside each
metric at every evaluation).

Three families, each read at the last evaluation of `metrics.jsonl`:

- retrieval: `<val>/<q>_to_<g>/R@1` against `.../chance`. A tower pair is at chance when
  *every* direction of it is (`near_chance`): the directions share the embeddings, and a
  direction with few queries (80 images against 400 captions) is noisy on its own;
- accuracies (`knn_accuracy`, `zero_shot_accuracy`, `linear_probe_accuracy`) against
  `majority_accuracy`, always answering the train split's majority class;
- numbers in generated reports: `captioning/numeric_fidelity` and `numeric_error` against
  always writing the train split's most frequent headline percentage. The evidence says
  whether the decoder does just that (`numeric_mode_share`: share of generated headline
  percentages equal to the train mode).
"""

from __future__ import annotations

import math
from typing import Any

from contrastkit.doctor.findings import Finding
from contrastkit.doctor.rules.context import Context, _r
from contrastkit.pairing import select_metric

# R@1 of a random ranking is chance p; over n queries it has standard error
# sqrt(p (1 - p) / n). A direction is "near chance" below NEAR_CHANCE_Z standard errors
# above p, or below NEAR_CHANCE_RATIO x p (the floor for large query sets, where 3 SE is
# a hair above p but R@1 at twice chance is still useless). The healthy tiny digits run
# (bench/recipes.py) ends at 4x chance on text->image over 400 queries (z = 6.8).
NEAR_CHANCE_Z = 3.0
NEAR_CHANCE_RATIO = 2.0
# An accuracy is clearly above the majority-class baseline when it beats it by this many
# points, or by this share of the room above it (1 - baseline), whichever is larger: with
# 10 classes (baseline ~0.1) a probe must reach ~0.19; the shipped digits probes reach
# 0.95-0.98 and the tiny digits run's k-NN 0.36-0.65.
ACCURACY_MARGIN_ABS = 0.02
ACCURACY_MARGIN_REL = 0.1
# Numbers in reports: the captions must reproduce more stated quantities than the
# constant report, by this share of the references' quantities, and miss the headline
# percentage by this many points less than it. Below that, the decoder's numbers carry no
# more information than the train split's most frequent value.
FIDELITY_MARGIN = 0.05
ERROR_MARGIN_POINTS = 2.0
# The decoder "writes the common value" when at least this share of its stated headline
# percentages is the train mode (a decoder that reads the input states it only as often
# as the references do).
MODE_SHARE_HIGH = 0.5
# ... or at least this multiple of how often the mode is the reference's value: angio's
# decoder writes its train mode in 49% of its reports where the references hold it in 12%.
MODE_OVERUSE = 2.0
ACCURACIES = ("knn_accuracy", "zero_shot_accuracy", "linear_probe_accuracy")


def near_chance(r1: float, chance: float, queries: float | None) -> bool:
    """R@1 is within noise of chance (`NEAR_CHANCE_Z` standard errors) or below
    `NEAR_CHANCE_RATIO` x chance."""
    bound = NEAR_CHANCE_RATIO * chance
    if queries and queries > 0 and 0 < chance < 1:
        bound = max(bound, chance + NEAR_CHANCE_Z * math.sqrt(chance * (1 - chance) / queries))
    return r1 <= bound


def last_values(ctx: Context, prefix: str) -> tuple[int, dict[str, float]]:
    """The last evaluation's keys under `prefix` (step, {key without prefix: value})."""
    steps = [r["step"] for r in ctx.signals if any(k.startswith(prefix) for k in r)]
    if not steps:
        return -1, {}
    step = max(steps)
    values: dict[str, float] = {}
    for r in ctx.signals:
        if r.get("step") == step:
            for k, v in r.items():
                if k.startswith(prefix) and isinstance(v, int | float) and math.isfinite(v):
                    values[k[len(prefix) :]] = float(v)
    return step, values


def _directions(values: dict[str, float]) -> list[str]:
    """Directions (`<q>_to_<g>`) with R@1 and chance, sorted."""
    dirs = sorted(k[: -len("/R@1")] for k in values if k.endswith("/R@1") and k.count("/") == 1)
    return [d for d in dirs if f"{d}/chance" in values]


def pairs_near_chance(values: dict[str, float]) -> list[list[dict[str, Any]]]:
    """For each tower pair whose every direction is near chance, the evidence of its
    directions (direction, R@1, chance, queries)."""
    by_pair: dict[frozenset[str], list[str]] = {}
    for d in _directions(values):
        q, _, g = d.partition("_to_")
        by_pair.setdefault(frozenset((q, g)), []).append(d)
    out = []
    for members in by_pair.values():
        rows: list[dict[str, Any]] = [
            {
                "direction": d,
                "R@1": _r(values[f"{d}/R@1"]),
                "chance": _r(values[f"{d}/chance"]),
                "queries": values.get(f"{d}/num_queries"),
            }
            for d in members
        ]
        if all(near_chance(x["R@1"], x["chance"], x["queries"]) for x in rows):
            out.append(rows)
    return out


def pairs_at_chance(values: dict[str, float]) -> tuple[list[str], list[dict[str, Any]]]:
    """Directions (`<q>_to_<g>`) with R@1 and chance, and the evidence of every direction
    of the tower pairs that are near chance in every direction (`pairs_near_chance`)."""
    return _directions(values), [row for rows in pairs_near_chance(values) for row in rows]


def _accuracies_at_majority(values: dict[str, float]) -> list[dict[str, Any]]:
    out = []
    for key, acc in sorted(values.items()):
        tower, _, metric = key.rpartition("/")
        base = values.get(f"{tower}/majority_accuracy")
        if metric not in ACCURACIES or base is None or "/" in tower:
            continue
        margin = max(ACCURACY_MARGIN_ABS, ACCURACY_MARGIN_REL * (1 - base))
        if acc < base + margin:
            out.append({"metric": key, "value": _r(acc), "majority_class": _r(base)})
    return out


def _numbers_at_baseline(values: dict[str, float]) -> dict[str, Any] | None:
    fid, fid0 = (
        values.get("captioning/numeric_fidelity"),
        values.get("captioning/numeric_fidelity_baseline"),
    )
    err, err0 = (
        values.get("captioning/numeric_error"),
        values.get("captioning/numeric_error_baseline"),
    )
    low_fidelity = fid is not None and fid0 is not None and fid < fid0 + FIDELITY_MARGIN
    high_error = err is not None and err0 is not None and err > err0 - ERROR_MARGIN_POINTS
    if not (low_fidelity or high_error):
        return None
    evidence = {
        k.split("/")[-1]: _r(v)
        for k, v in values.items()
        if k.startswith("captioning/") and ("numeric" in k or k.endswith("ROUGE-L"))
    }
    return evidence


def _caption_causes(ctx: Context, numbers: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """Cause sentence, fix and note for numbers no better than the constant report."""
    share = numbers.get("numeric_mode_share")
    right = numbers.get("numeric_mode_share_reference")
    writes_mode = share is not None and (
        share >= MODE_SHARE_HIGH or (right is not None and share >= MODE_OVERUSE * right > 0)
    )
    epochs = ctx.cfg.train.epochs
    fix: dict[str, Any] = {"train.epochs": epochs * 2}
    weight = getattr(ctx.cfg.loss.heads.get("captioning"), "weight", None)
    if writes_mode and share is not None:
        mode = numbers.get("numeric_mode")
        value = f" ({mode:g}%)" if mode is not None else ""
        truth = f" (the references state it in {100 * right:.0f}%)" if right is not None else ""
        cause = (
            f"the decoder writes the train split's most frequent value{value}: "
            f"{100 * share:.0f}% of its stated percentages are that mode{truth}, so its "
            "numbers do not come from the input"
        )
    else:
        cause = (
            "the decoder states other numbers, but no more of them are right than the train "
            "split's most frequent value would get: it has not learned to read them from the "
            "input"
        )
    note = (
        "Fluent text with the wrong numbers: ROUGE/BLEU do not see it. Check that the "
        "quantity is visible at the input resolution the run uses (e.g. data.video / "
        "data.image size and frames) and train longer; the numbers are a few tokens of each "
        "report, so the captioning loss can fall while they stay at the mode."
    )
    if weight is not None and weight < 1.0:
        # The number is read through the shared encoder: a light captioning term gives
        # the encoder little reason to keep the detail the number needs.
        fix["loss.captioning.weight"] = 1.0
    return cause, fix, note


def rule_metric_at_baseline(ctx: Context) -> list[Finding]:
    """`metric_at_baseline`: validation retrieval at chance, an accuracy at the majority
    class, or report numbers no better than always writing the most frequent value."""
    val = ctx.cfg.data.val_split
    if not val:
        return []
    step, values = last_values(ctx, f"{val}/")
    if step < 0:
        return []
    _, retrieval = pairs_at_chance(values)
    accuracies = _accuracies_at_majority(values)
    numbers = _numbers_at_baseline(values)
    if not (retrieval or accuracies or numbers):
        return []
    evidence: dict[str, Any] = {"split": val, "step": step}
    parts: list[str] = []
    fix: dict[str, Any] = {}
    note = ""
    if retrieval:
        evidence["retrieval_at_chance"] = retrieval
        parts.append(
            "retrieval R@1 is within noise of chance (1 / gallery size): "
            + ", ".join(f"{x['direction']} {x['R@1']} vs {x['chance']}" for x in retrieval)
        )
    if accuracies:
        evidence["accuracy_at_majority"] = accuracies
        parts.append(
            "accuracy no better than always answering the majority class: "
            + ", ".join(f"{x['metric']} {x['value']} vs {x['majority_class']}" for x in accuracies)
        )
    if numbers:
        evidence["numbers"] = numbers
        cause, fix, note = _caption_causes(ctx, numbers)
        parts.append(
            f"report numbers no better than always writing the train mode (numeric_fidelity "
            f"{numbers.get('numeric_fidelity')} vs {numbers.get('numeric_fidelity_baseline')}, "
            f"numeric_error {numbers.get('numeric_error')} vs "
            f"{numbers.get('numeric_error_baseline')} points): {cause}"
        )
    selected = select_metric(ctx.cfg) or ""
    on_selected = any(f"{val}/{x['direction']}/R@1" == selected for x in retrieval)
    if not note:
        note = (
            "A metric at its trivial baseline means the model ignores the input for it; "
            "look at the other findings for why (data joins, learning rate, temperature)."
        )
    return [
        Finding(
            "metric_at_baseline",
            "error" if on_selected else "warning",
            evidence,
            f"At step {step}, on {val}: " + "; ".join(parts) + ".",
            fix,
            note,
        )
    ]
