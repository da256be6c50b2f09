"""Duplicate checks: the same media or text (exact, or by embedding) under different
groups, so that true matches become negatives of each other."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from contrastkit.data.manifest import is_text_column
from contrastkit.doctor.data_checks.content import normalise_text
from contrastkit.doctor.data_checks.thresholds import (
    ERROR_SHARE,
    MAX_EMBED_TEXTS,
    MAX_EXAMPLES,
    WARN_SHARE,
)
from contrastkit.doctor.findings import Finding


def _example(rows: Iterable[Any], column: str) -> dict[str, Any]:
    rows = list(rows)[:MAX_EXAMPLES]
    return {
        "column": column,
        "ids": [r.id for r in rows],
        "groups": [r.group for r in rows],
        "lines": [r.line for r in rows],
        "splits": [r.split for r in rows],
    }


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
