"""Text truncation: rows the tokenizer cuts, and distinct texts the cut makes identical.

Each text column is tokenised twice on a seeded sample of every split (`TEXT_ROWS_PER_SPLIT`
rows): in full and at the run's max length. A row is *truncated* when its full token count
exceeds the max length. Distinct texts of different groups whose cut token sequences are
equal are identical inputs under different groups, like `duplicate_groups`, except that the
tokenizer made them so: captions cut before the words that tell their images apart.

The suggested length is the shortest that keeps every such pair apart. Sorted
lexicographically, the longest common prefix of any two token sequences is reached by two
neighbours, so one pass over the sorted full sequences gives the longest shared prefix P
(start token included); cutting at P + 2 keeps the first differing token and the end token.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from contrastkit.doctor.data_checks.signal_items import sample_rows
from contrastkit.doctor.data_checks.text_cuts import TextCut
from contrastkit.doctor.data_checks.thresholds import (
    ERROR_SHARE,
    MAX_EXAMPLES,
    SIGNAL_SEED,
    TEXT_ROWS_PER_SPLIT,
    TOKENISE_CHUNK,
    TRUNCATED_INFO_SHARE,
    UNCUT_LENGTH,
    WARN_SHARE,
)
from contrastkit.doctor.findings import Finding, Severity


def _token_rows(cut: TextCut, texts: list[str], length: int) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for start in range(0, len(texts), TOKENISE_CHUNK):
        ids, mask = cut.tokenizer.encode(texts[start : start + TOKENISE_CHUNK], length)
        out += [tuple(r[: int(m.sum())].tolist()) for r, m in zip(ids, mask, strict=True)]
    return out


def _shared_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _split_cut(rows: list[Any], cut: TextCut) -> dict[str, Any]:
    """Counts, clashes and the separating length of one split's sample."""
    rows = [r for r in rows if isinstance(r.values.get(cut.column), str)]
    first: dict[str, Any] = {}  # distinct text -> its first row
    for r in rows:
        first.setdefault(r.values[cut.column], r)
    texts = list(first)
    full = _token_rows(cut, texts, UNCUT_LENGTH)
    long_idx = [i for i, f in enumerate(full) if len(f) > cut.max_length]
    kept = list(full)  # a text within the length is kept whole: only long ones are re-cut
    for i, k in zip(
        long_idx, _token_rows(cut, [texts[i] for i in long_idx], cut.max_length), strict=True
    ):
        kept[i] = k
    long_text = {texts[i] for i in long_idx}
    by_kept: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, k in enumerate(kept):
        by_kept[k].append(i)
    clashes = [idx for idx in by_kept.values() if len({first[texts[i]].group for i in idx}) > 1]
    clashing = [i for idx in clashes for i in idx]
    need = 0
    for idx in clashes:
        seqs = sorted(full[i] for i in idx)
        need = max(need, *(_shared_prefix(a, b) + 2 for a, b in zip(seqs, seqs[1:], strict=False)))
    return {
        "rows": len(rows),
        "rows_truncated": sum(1 for r in rows if r.values[cut.column] in long_text),
        "distinct_texts": len(texts),
        "texts_identical_after_cut": len(clashing),
        "lengths": sorted(len(f) for f in full),
        "need": need,
        "examples": [
            {
                "split": first[texts[idx[0]]].split,
                "ids": [first[texts[i]].id for i in idx[:MAX_EXAMPLES]],
                "lines": [first[texts[i]].line for i in idx[:MAX_EXAMPLES]],
                "texts": [texts[i][:120] for i in idx[:MAX_EXAMPLES]],
                "tokens_kept": cut.tokenizer.decode([kept[idx[0]]])[0],
            }
            for idx in clashes[:MAX_EXAMPLES]
        ],
    }


def _severity(identical: float, truncated: float) -> Severity | None:
    if identical >= ERROR_SHARE:
        return "error"
    if identical >= WARN_SHARE:
        return "warning"
    return "info" if truncated >= TRUNCATED_INFO_SHARE else None


def _check_cut(splits: dict[str, list[Any]], cut: TextCut) -> list[Finding]:
    parts = {
        name: _split_cut(sample_rows(rows, TEXT_ROWS_PER_SPLIT, SIGNAL_SEED), cut)
        for name, rows in sorted(splits.items())
    }
    rows = sum(p["rows"] for p in parts.values())
    distinct = sum(p["distinct_texts"] for p in parts.values())
    if not rows:
        return []
    truncated = sum(p["rows_truncated"] for p in parts.values())
    identical = sum(p["texts_identical_after_cut"] for p in parts.values())
    share_cut, share_same = truncated / rows, identical / max(distinct, 1)
    severity = _severity(share_same, share_cut)
    if severity is None:
        return []
    lengths = sorted(n for p in parts.values() for n in p["lengths"])
    p95 = lengths[min(len(lengths) - 1, math.ceil(0.95 * len(lengths)) - 1)]
    need = max(p["need"] for p in parts.values())
    suggest = need if identical else p95
    if cut.limit is not None:
        suggest = min(suggest, cut.limit)
    evidence = {
        "column": cut.column,
        "max_length": cut.max_length,
        "key": cut.key,
        "rows_sampled": rows,
        "rows_truncated": truncated,
        "share_truncated": round(share_cut, 4),
        "distinct_texts": distinct,
        "texts_identical_after_cut": identical,
        "share_identical": round(share_same, 4),
        "length_p95": p95,
        "length_max": lengths[-1],
        "length_to_keep_apart": need or None,
        "per_split": {
            n: {k: p[k] for k in ("rows", "rows_truncated", "texts_identical_after_cut")}
            for n, p in parts.items()
        },
        "examples": [e for p in parts.values() for e in p["examples"]][:MAX_EXAMPLES],
    }
    if identical:
        cause = (
            f"Cut at {cut.max_length} tokens, {identical} of {distinct} distinct texts of "
            f"column {cut.column!r} become the same token sequence as a text of another "
            "group: the words that tell them apart come after the cut, so the model sees "
            "identical inputs for different items."
        )
    else:
        cause = (
            f"{truncated} of {rows} rows of column {cut.column!r} are longer than {cut.max_length} "
            "tokens and lose their ends (no two become identical)."
        )
    return [
        Finding(
            "text_truncated",
            severity,
            evidence,
            cause,
            fix={cut.key: suggest} if suggest > cut.max_length else {},
            fix_note=f"raise {cut.key} (the model's limit: {cut.limit})" if cut.limit else "",
        )
    ]


def check_truncation(splits: dict[str, list[Any]], cuts: list[TextCut]) -> list[Finding]:
    """`text_truncated` per (text column, tokenizer) of the run.

    Args:
        splits: split name -> its rows.
        cuts: each text column with its tokenizer and max length (`text_cuts`).
    """
    findings: list[Finding] = []
    for cut in cuts:
        findings += _check_cut(splits, cut)
    return findings
