"""Split leakage: evaluation rows whose group, media or whole pair training has seen."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from contrastkit.config import Config
from contrastkit.data.manifest import is_text_column
from contrastkit.doctor.data_checks.thresholds import MAX_EXAMPLES, WARN_SHARE
from contrastkit.doctor.findings import Finding, Severity


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
