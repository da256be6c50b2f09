"""False negatives in random batches: how often rows that share content meet in a batch.

A host whose loss treats every row as its own class (open_clip's CLIP loss,
sentence-transformers' MultipleNegativesRankingLoss) makes two rows that share an image or
a text *negatives* of each other whenever one batch holds both. Rows are joined into
duplicate clusters (connected components of "shares a media or text key", in one split).
For random batches of B rows drawn without replacement from N, a given ordered pair of
distinct rows lands in one batch with probability B(B-1) / (N(N-1)), so the expected
number of ordered false-negative pairs per batch is

    E = B(B-1) * sum_c P_c / (N(N-1)),   P_c = n_c(n_c-1) - sum_g n_cg(n_cg-1),

where n_c is the cluster's size and n_cg the rows of the cluster in group g (rows of one
group are positives, not false negatives). With every row its own group, P_c = n_c(n_c-1).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from contrastkit.data.manifest import is_text_column


def _clusters(rows: list[Any], keys: dict[str, list[tuple[str, str]]]) -> list[list[Any]]:
    """Connected components of rows that share a content key (union-find)."""
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple[str, str], int] = {}
    for i, r in enumerate(rows):
        for ck in keys[r.id]:
            j = first.setdefault(ck, i)
            parent[find(i)] = find(j)
    members: dict[int, list[Any]] = defaultdict(list)
    for i, r in enumerate(rows):
        members[find(i)].append(r)
    return [m for m in members.values() if len(m) > 1]


def false_negative_evidence(
    rows: list[Any], keys: dict[str, list[tuple[str, str]]], batch_size: int
) -> dict[str, Any]:
    """Rows sharing media / text in one split, and the expected false negatives per batch.

    Args:
        rows: one split's rows (id, group, values).
        keys: row id -> its (column, content key) pairs (`content.content_keys`).
        batch_size: the host's batch size B.
    """
    n = len(rows)
    sharing: dict[str, set[str]] = {"media": set(), "text": set()}
    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for r in rows:
        for ck in keys[r.id]:
            by_key[ck].append(r)
    for (column, _), members in by_key.items():
        if len(members) > 1:
            sharing["text" if is_text_column(column) else "media"].update(r.id for r in members)
    pairs = 0
    clusters = _clusters(rows, keys)
    for c in clusters:
        per_group = Counter(r.group for r in c)
        pairs += len(c) * (len(c) - 1) - sum(k * (k - 1) for k in per_group.values())
    b = min(batch_size, n)
    expected = b * (b - 1) * pairs / (n * (n - 1)) if n > 1 else 0.0
    return {
        "rows": n,
        "rows_sharing_media": len(sharing["media"]),
        "rows_sharing_text": len(sharing["text"]),
        "duplicate_clusters": len(clusters),
        "largest_cluster": max((len(c) for c in clusters), default=1),
        "false_negative_pairs": pairs,
        "batch_size": batch_size,
        "expected_false_negatives_per_batch": round(expected, 4),
    }
