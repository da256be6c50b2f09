"""Group checks: group ids written two ways, too few positives per batch, and splits
whose single-row groups leave leave-one-out retrieval without a positive."""

from __future__ import annotations

from collections import Counter
from typing import Any

from contrastkit.config import Config
from contrastkit.data.manifest import group_format_clashes
from contrastkit.doctor.data_checks.thresholds import MAX_EXAMPLES
from contrastkit.doctor.findings import Finding
from contrastkit.pairing import eval_pairs


def check_group_formats(rows: list[Any]) -> list[Finding]:
    """Group ids that are one number written two ways ("01" and "1"): the manifest reader
    merges 1 / 1.0 / " 1", so these are the spellings it deliberately leaves apart."""
    clashes = group_format_clashes(rows)
    if not clashes:
        return []
    return [
        Finding(
            "group_id_formats",
            "warning",
            {"clashes": len(clashes), "examples": clashes[:MAX_EXAMPLES]},
            "Some group ids differ only in how a number is written, so rows meant as one "
            "group may be split into several and become negatives of each other.",
            fix={},
            fix_note="write each group id one way in the manifest (e.g. without leading "
            "zeros or exponents), or make the ids non-numeric if they really differ.",
        )
    ]


def expected_positive_pairs(sizes: list[int], batch_size: int, cfg: Config) -> float:
    """Expected ordered in-batch pairs (i != j) that share a group.

    Random sampling without replacement: B(B-1) * sum n_g(n_g-1) / (N(N-1)).
    Groups sampler (K groups x M members): K * M(M-1).
    """
    s = cfg.data.sampler
    if s.type == "groups":
        m = s.members_per_group
        k = s.groups_per_batch or max(batch_size // m, 1)
        return float(k * m * (m - 1))
    n = sum(sizes)
    if n < 2:
        return 0.0
    p = sum(x * (x - 1) for x in sizes) / (n * (n - 1))
    b = min(batch_size, n)
    return b * (b - 1) * p


def check_retrieval_groups(rows: list[Any], cfg: Config) -> list[Finding]:
    """A one-tower evaluation pair `(t, t)` (leave-one-out) on a split whose groups are
    all single rows: no query has a positive, so evaluation will skip that pair. Said
    before training, so the run is not spent on a metric that cannot be computed."""
    one_tower = [q for q, g in eval_pairs(cfg) if q == g]
    if not one_tower:
        return []
    splits: dict[str, dict[str, int]] = {}
    for split in cfg.eval.splits:
        sizes = Counter(r.group for r in rows if r.split == split)
        if sizes and max(sizes.values()) < 2:
            splits[split] = {"rows": sum(sizes.values()), "groups": len(sizes)}
    if not splits:
        return []
    pairs = [f"{t}_to_{t}" for t in one_tower]
    return [
        Finding(
            "retrieval_no_positives",
            "warning",
            {"pairs": pairs, "splits": splits},
            f"Every group of {', '.join(sorted(splits))} holds a single row, so leave-one-out "
            f"retrieval ({', '.join(pairs)}) has no positive to find; evaluation skips it.",
            fix_note="give the rows of one item (several renders, views or recordings) the "
            "same `group`, or evaluate with labels (class_R@1, knn_accuracy) instead.",
        )
    ]


def check_groups(rows: list[Any], cfg: Config) -> list[Finding]:
    """Enough positives per batch for one-tower objectives and for the groups sampler."""
    train = [r for r in rows if r.split == cfg.data.train_split]
    if not train:
        return []
    sizes = list(Counter(r.group for r in train).values())
    b = cfg.data.batch_size
    expected = expected_positive_pairs(sizes, b, cfg)
    evidence: dict[str, Any] = {
        "groups": len(sizes),
        "singleton_group_share": round(sum(1 for n in sizes if n == 1) / len(sizes), 4),
        "mean_group_size": round(sum(sizes) / len(sizes), 3),
        "batch_size": b,
        "sampler": cfg.data.sampler.type,
        "expected_positive_pairs_per_batch": round(expected, 3),
    }
    one_tower = [o.name for o in cfg.loss.objectives if len(o.towers) == 1]
    m = cfg.data.sampler.members_per_group
    if cfg.data.sampler.type == "groups":
        short = sum(1 for n in sizes if n < m)
        if short / len(sizes) > 0.5:
            evidence["groups_smaller_than_members_per_group"] = short
            median = int(sorted(sizes)[len(sizes) // 2])
            return [
                Finding(
                    "small_groups",
                    "warning",
                    evidence,
                    f"Most groups have fewer than members_per_group={m} rows, so the groups "
                    "sampler cannot fill its K x M batches with distinct positives.",
                    fix={"data.sampler.members_per_group": max(median, 2)},
                )
            ]
    elif one_tower and expected < 1.0:
        evidence["one_tower_objectives"] = one_tower
        k = max(b // 2, 1)
        return [
            Finding(
                "small_groups",
                "warning",
                evidence,
                "One-tower objectives find positives only among other rows of the same group, "
                "and random batches of these groups hold fewer than one such pair.",
                fix={
                    "data.sampler.type": "groups",
                    "data.sampler.groups_per_batch": k,
                    "data.sampler.members_per_group": 2,
                    "data.batch_size": 2 * k,
                },
            )
        ]
    return []
