"""Data doctor: match-group health checks run before training.

The commonest silent failure in contrastive data is grouping: when five captions of one
image each get their own `group`, the other four captions become *negatives* of the
image, the loss pushes apart what should be together and training "collapses" for no
visible reason. These checks find that (identical media or normalised text under
different groups), split leakage, rows skipped by `on_error: skip`, missing labels, and
batches with too few positives. Files are hashed once each; everything else is dict
look-ups, so ~10k rows take well under a second plus the file reads.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from contrastkit.config import Config
from contrastkit.data.manifest import PATH_COLUMNS, group_format_clashes, is_text_column
from contrastkit.doctor.findings import Finding, Severity
from contrastkit.pairing import eval_pairs

MAX_EXAMPLES = 5
ERROR_SHARE = 0.10  # duplicate groups touching >= 10% of rows make the run unlearnable
WARN_SHARE = 0.01  # below 1% of rows, a few coincidences (real data has some) are info only
MAX_EMBED_TEXTS = 20000  # cap for the optional embedding near-duplicate search
_PUNCT = str.maketrans("", "", string.punctuation)
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace: "A dog." == "a  dog"."""
    return _SPACE.sub(" ", str(text).lower().translate(_PUNCT)).strip()


def _hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _hash_path(path: Path, cache: dict[Path, str]) -> str:
    """Hash of the file's bytes (decoded array bytes for .npy, so headers do not matter)."""
    if path in cache:
        return cache[path]
    if not path.is_file():
        key = "path:" + str(path)
    elif path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        key = _hash_bytes(str((arr.shape, arr.dtype.str)).encode() + arr.tobytes())
    else:
        key = _hash_bytes(path.read_bytes())
    cache[path] = key
    return key


def content_keys(row: Any, cache: dict[Path, str]) -> list[tuple[str, str]]:
    """(column, key) per content column of a row: media hash or normalised text."""
    keys = []
    for column, value in row.values.items():
        if value is None or not (is_text_column(column) or column in PATH_COLUMNS):
            continue
        if is_text_column(column):
            norm = normalise_text(value)
            if norm:
                keys.append((column, "text:" + norm))
        elif column in getattr(row, "paths", {}):
            paths = row.paths[column]
            paths = paths if isinstance(paths, tuple) else (paths,)
            keys.append((column, "+".join(_hash_path(Path(p), cache) for p in paths)))
        elif isinstance(value, list | tuple | np.ndarray):
            keys.append((column, _hash_bytes(np.asarray(value, dtype=np.float64).tobytes())))
        elif isinstance(value, str):
            keys.append((column, "path:" + value))
    return keys


def _example(rows: Iterable[Any], column: str) -> dict[str, Any]:
    rows = list(rows)[:MAX_EXAMPLES]
    return {
        "column": column,
        "ids": [r.id for r in rows],
        "groups": [r.group for r in rows],
        "lines": [r.line for r in rows],
        "splits": [r.split for r in rows],
    }


def _all_rows(bundle: Any) -> list[Any]:
    seen: set[str] = set()
    rows = []
    for dataset in bundle.splits.values():
        for r in dataset.rows:
            if r.id not in seen:
                seen.add(r.id)
                rows.append(r)
    return rows


def check_duplicates(rows: list[Any], keys: dict[str, list[tuple[str, str]]]) -> list[Finding]:
    """Identical media / normalised text under different groups of one split."""
    by_key: dict[tuple[str, str, str], dict[str, list[Any]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in rows:
        for column, key in keys[r.id]:
            by_key[(r.split, column, key)][r.group].append(r)
    dups = {k: g for k, g in by_key.items() if len(g) >= 2}
    if not dups:
        return []
    affected = {r.id for g in dups.values() for members in g.values() for r in members}
    counts = Counter("text" if is_text_column(col) else "media" for _, col, _ in dups)
    sizes = Counter(r.group for r in rows)
    share = len(affected) / max(len(rows), 1)
    worst = sorted(dups.items(), key=lambda kv: -len(kv[1]))[:MAX_EXAMPLES]
    evidence = {
        "rows": len(rows),
        "rows_affected": len(affected),
        "share_affected": round(share, 4),
        "media_duplicates": counts["media"],
        "text_duplicates": counts["text"],
        "singleton_group_share": round(sum(1 for n in sizes.values() if n == 1) / len(sizes), 4),
        "examples": [_example([m[0] for m in g.values()], col) for (_, col, _), g in worst],
    }
    return [
        Finding(
            "duplicate_groups",
            "error" if share >= ERROR_SHARE else "warning" if share >= WARN_SHARE else "info",
            evidence,
            "Rows with identical media or text carry different `group` values, so the loss "
            "treats them as negatives of each other and pushes true matches apart.",
            fix={},
            fix_note="give rows that share media (or text) the same `group` in the manifest, "
            "e.g. group = the image path; see the examples' ids and lines.",
        )
    ]


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


def _group_leakage(rows: list[Any]) -> tuple[dict[str, dict[str, int]], list[dict[str, Any]]]:
    """Group ids found in two or more splits: per split, how many such groups and rows."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        splits_of[r.group].add(r.split)
    shared = {g for g, splits in splits_of.items() if len(splits) >= 2}
    groups: dict[str, set[str]] = defaultdict(set)
    members: dict[str, list[Any]] = defaultdict(list)
    counts: dict[str, dict[str, int]] = {}
    for r in rows:
        if r.group in shared:
            groups[r.split].add(r.group)
            members[r.group].append(r)
    for split in sorted(groups):
        n_rows = sum(1 for r in rows if r.split == split and r.group in shared)
        counts[split] = {"groups": len(groups[split]), "rows": n_rows}
    examples = [
        {
            "group": g,
            "splits": sorted(splits_of[g]),
            "ids": [r.id for r in members[g][:MAX_EXAMPLES]],
            "lines": [r.line for r in members[g][:MAX_EXAMPLES]],
            "row_splits": [r.split for r in members[g][:MAX_EXAMPLES]],
        }
        for g in sorted(shared)[:MAX_EXAMPLES]
    ]
    return counts, examples


def check_leakage(
    rows: list[Any], cfg: Config, keys: dict[str, list[tuple[str, str]]]
) -> list[Finding]:
    """Evaluation data that training has seen, three ways, each counted per split:

    - a group id in two or more splits (any two: the split was made per row, not per
      group -- five captions of one image spread over train and test);
    - an evaluation row whose media was in training, whatever its caption: that gallery
      item was trained on;
    - an evaluation row whose every content column (media and text) was in training: the
      same pair is in both splits.
    Only a *text* seen in training (a generic caption reused for another image) is common
    and harmless; it is counted as `rows_partly_shared` evidence only.
    """
    train = cfg.data.train_split
    evals = [s for s in (cfg.data.val_split, cfg.data.test_split) if s]
    train_keys: dict[tuple[str, str], Any] = {}
    for r in rows:
        if r.split == train:
            for ck in keys[r.id]:
                train_keys.setdefault(ck, r)
    leaked: dict[str, list[tuple[Any, Any, str]]] = defaultdict(list)
    media: dict[str, list[tuple[Any, Any, str]]] = defaultdict(list)
    partial: Counter = Counter()
    for r in rows:
        if r.split not in evals or not keys[r.id]:
            continue
        seen = [ck for ck in keys[r.id] if ck in train_keys]
        seen_media = [ck for ck in seen if not is_text_column(ck[0])]
        if len(seen) == len(keys[r.id]):
            leaked[r.split].append((r, train_keys[seen[0]], seen[0][0]))
        elif seen_media:
            media[r.split].append((r, train_keys[seen_media[0]], seen_media[0][0]))
        elif seen:
            partial[r.split] += 1
    group_counts, group_examples = _group_leakage(rows)
    if not (leaked or media or group_counts):
        return []
    totals = Counter(r.split for r in rows)
    evidence: dict[str, Any] = {
        **{f"{split}_rows_leaked": len(v) for split, v in leaked.items()},
        **{f"{split}_rows_media_seen_in_train": len(v) for split, v in media.items()},
        **{f"{split}_rows": totals[split] for split in {*leaked, *media, *group_counts}},
        "groups_in_several_splits": group_counts,
    }
    evidence["examples"] = [
        {"id": r.id, "split": r.split, "line": r.line, "train_id": t.id, "train_line": t.line,
         "column": c, "media_only": kind == "media"}
        for kind, found in (("pair", leaked), ("media", media))
        for v in found.values()
        for r, t, c in v[:MAX_EXAMPLES]
    ]  # fmt: skip
    evidence["group_examples"] = group_examples
    share = max(
        [len(v) / max(totals[split], 1) for found in (leaked, media) for split, v in found.items()]
        or [0.0]
    )
    evidence["max_share_leaked"] = round(share, 4)
    evidence["rows_partly_shared"] = dict(partial)
    # A group id in two splits is a splitting mistake by definition, never a coincidence.
    severity: Severity = "warning" if group_counts or share >= WARN_SHARE else "info"
    return [
        Finding(
            "split_leakage",
            severity,
            evidence,
            "Evaluation rows share a match group, media or a whole pair with training rows, "
            "so retrieval metrics measure memorisation, not generalisation.",
            fix_note="assign splits per group (and per media file), so that a group and a "
            "file each appear in one split only; see the examples' ids and lines.",
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


def check_labels(rows: list[Any], cfg: Config) -> list[Finding]:
    """Rows without the label / attributes that the classifier or triplet margin needs."""
    needs: dict[str, str] = {}
    if "classification" in cfg.model.heads or "classification" in cfg.loss.heads:
        needs["label"] = "the classification head"
    for o in cfg.loss.objectives:
        if getattr(o, "margin_scale", 0.0) > 0:
            needs["attributes"] = f"the attribute margin of objective {o.name!r}"
        if getattr(o, "same_label_negatives", False):
            needs.setdefault("label", f"same_label_negatives of objective {o.name!r}")
    train = [r for r in rows if r.split == cfg.data.train_split]
    out = []
    for column, user in needs.items():
        missing = [r for r in train if r.values.get(column) in (None, "", [])]
        if not missing:
            continue
        out.append(
            Finding(
                "labels_missing",
                "error" if len(missing) == len(train) else "warning",
                {
                    "column": column,
                    "rows_missing": len(missing),
                    "rows": len(train),
                    "needed_by": user,
                    "examples": [{"id": r.id, "line": r.line} for r in missing[:MAX_EXAMPLES]],
                },
                f"{len(missing)} of {len(train)} training rows have no {column!r}, which "
                f"{user} needs; those rows add nothing to that term.",
                fix_note=f"fill the {column!r} column in the manifest or disable {user}.",
            )
        )
    return out


def check_skipped(bundle: Any, rows: list[Any]) -> list[Finding]:
    """Rows dropped by `data.on_error: skip`, by column and reason."""
    skipped = list(getattr(bundle, "skipped", []) or [])
    if not skipped:
        return []
    share = len(skipped) / (len(skipped) + len(rows))
    evidence = {
        "rows_skipped": len(skipped),
        "share_skipped": round(share, 4),
        "by_column": dict(Counter(s.column for s in skipped)),
        "examples": [
            {
                "manifest": str(s.manifest),
                "line": s.line,
                "id": s.id,
                "column": s.column,
                "reason": s.reason,
            }
            for s in skipped[:MAX_EXAMPLES]
        ],
    }
    return [
        Finding(
            "rows_skipped",
            "error" if share >= 0.5 else "warning",
            evidence,
            f"{len(skipped)} manifest rows could not be read and were left out, so the "
            "model trains on less data than the manifest lists.",
            fix={"data.on_error": "raise"},
            fix_note="run with data.on_error=raise to see the first bad row, then fix the manifest.",
        )
    ]


def check_near_duplicates(
    rows: list[Any], threshold: float, embed_texts: Callable[[list[str]], Tensor], chunk: int = 1024
) -> list[Finding]:
    """Texts of different groups whose embeddings have cosine >= threshold (false negatives)."""
    first: dict[str, Any] = {}
    for r in rows:
        text = r.values.get("text")
        if isinstance(text, str) and normalise_text(text):
            first.setdefault(normalise_text(text), r)
    items = list(first.items())[:MAX_EMBED_TEXTS]
    if len(items) < 2:
        return []
    with torch.no_grad():
        emb = torch.nn.functional.normalize(
            embed_texts([r.values["text"] for _, r in items]).float(), dim=-1
        )
    codes = {g: i for i, g in enumerate(sorted({r.group for _, r in items}))}
    groups = torch.tensor([codes[r.group] for _, r in items])
    pairs = 0
    examples: list[Any] = []
    for start in range(0, len(items), chunk):
        sim = emb[start : start + chunk] @ emb.T
        rows_idx = torch.arange(start, min(start + chunk, len(items)))
        mask = (sim >= threshold) & (groups[rows_idx, None] != groups[None, :])
        mask &= rows_idx[:, None] < torch.arange(len(items))[None, :]  # each pair once
        pairs += int(mask.sum())
        for i, j in mask.nonzero().tolist()[: MAX_EXAMPLES - len(examples)]:
            a, b = items[start + i][1], items[j][1]
            examples.append(
                {
                    "ids": [a.id, b.id],
                    "groups": [a.group, b.group],
                    "cosine": round(float(sim[i, j]), 4),
                }
            )
    if pairs == 0:
        return []
    return [
        Finding(
            "false_negatives",
            "warning",
            {"pairs": pairs, "texts": len(items), "threshold": threshold, "examples": examples},
            "Texts of different groups say nearly the same thing, so in-batch softmax "
            "treats real matches as negatives.",
            fix={"data.sampler.type": "groups"},
            fix_note="merge the groups of near-duplicate texts in the manifest, or raise "
            "doctor.near_duplicate_cosine if these pairs are genuinely different.",
        )
    ]


def check_data(
    bundle: Any,
    cfg: Config,
    *,
    embed_texts: Callable[[list[str]], Tensor] | None = None,
) -> list[Finding]:
    """Run every data check on a `DatasetBundle`.

    Args:
        bundle: the datasets (`.splits[name].rows`, `.skipped`).
        cfg: the run config (batch size, sampler, objectives, heads, doctor thresholds).
        embed_texts: optional text embedder for near-duplicate search (B texts -> B x D).

    Returns:
        Findings, unsorted (see `sort_findings`).
    """
    rows = _all_rows(bundle)
    cache: dict[Path, str] = {}  # each file is hashed once
    keys = {r.id: content_keys(r, cache) for r in rows}
    findings = check_duplicates(rows, keys)
    findings += check_group_formats(rows)
    findings += check_leakage(rows, cfg, keys)
    findings += check_groups(rows, cfg)
    findings += check_retrieval_groups(rows, cfg)
    findings += check_labels(rows, cfg)
    findings += check_skipped(bundle, rows)
    if embed_texts is not None:
        train = [r for r in rows if r.split == cfg.data.train_split]
        findings += check_near_duplicates(train, cfg.doctor.near_duplicate_cosine, embed_texts)
    return findings
