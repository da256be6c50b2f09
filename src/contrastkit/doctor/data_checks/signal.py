"""Input signal checks: is there anything in each input column for the model to learn from?

Measured on a seeded sample of every split (`signal_items.measure_split`), item by item,
then judged per column over the sample:

- `input_nonfinite`: stored values that are NaN / Inf (one such item makes its batch's
  loss NaN);
- `input_scaling`: a value range that says the pixels were scaled twice or not at all:
  integer pixels holding only 0..1, float pixels in 0..255 (or z-scored) where 0..1 is
  read, float pixels divided by 255 twice;
- `input_low_signal`: items whose spread, as the model sees them, is below
  `LOW_SIGNAL_STD` of the value range (near-black, blank), or constant arrays;
- `inputs_identical`: different files that the loader's resize / crop makes identical,
  under different groups (the model cannot tell them apart).

An item is counted by the first of these that applies, so one cause gives one finding:
double-normalised pixels are mis-scaled, not "low signal" as well.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from contrastkit.data.media import FLOAT_PIXEL_MAX, FLOAT_PIXEL_MIN, ReadOptions
from contrastkit.doctor.data_checks.signal_items import (
    PIXEL_COLUMNS,
    ItemSignal,
    measure_split,
)
from contrastkit.doctor.data_checks.thresholds import (
    ERROR_SHARE,
    FLOAT_TWICE_DIVIDED_MAX,
    INPUT_ERROR_SHARE,
    INPUT_WARN_SHARE,
    INTEGER_MAX_AS_UNIT,
    LOW_SIGNAL_STD,
    MAX_EXAMPLES,
    SIGNAL_ROWS_PER_SPLIT,
    SIGNAL_SEED,
    WARN_SHARE,
)
from contrastkit.doctor.findings import Finding, Severity

# What each mis-scaling looks like, and what to change in the export.
SCALING_NOTES = {
    "integer_holds_0_1": "integer pixels that only hold 0 and 1: the image was divided by 255 "
    "(or was a 0/1 mask) before it was saved as integers, so the model sees values within "
    "1/255 of black; save x * 255 as uint8, or the 0..1 floats as float .npy",
    "float_0_255": "float pixels above 2: values in 0..255 where the loader reads float "
    "pixels as 0..1, so they are clamped to white; divide by 255 before saving, or save uint8",
    "float_below_-1": "float pixels below -1: already normalised (mean/std) before saving, "
    "so the loader clamps them to black; save the unnormalised 0..1 values",
    "float_divided_twice": "float pixels no larger than 1/255: divided by 255 twice; save the "
    "values divided once (0..1)",
}
# The config key that keeps detail the loader's resize / crop removes, per column.
DETAIL_KEYS = {
    "image": ("data.image.size", "image_size"),
    "video": ("data.video.size", "video_size"),
    "sequence": ("data.sequence.max_length", "max_length"),
}


def _scaling(item: ItemSignal) -> str | None:
    """Which mis-scaling the stored values show, or None."""
    if item.column not in PIXEL_COLUMNS or item.dtype is None or item.stored_max is None:
        return None
    lo, hi = item.stored_min, item.stored_max
    assert lo is not None
    if item.dtype[0] in "ui":
        return "integer_holds_0_1" if lo >= 0 and 0 < hi <= INTEGER_MAX_AS_UNIT else None
    if not item.dtype.startswith("float"):
        return None
    if hi > FLOAT_PIXEL_MAX:
        return "float_0_255"
    if lo < FLOAT_PIXEL_MIN:
        return "float_below_-1"
    if lo >= 0 and 0 < hi <= FLOAT_TWICE_DIVIDED_MAX:
        return "float_divided_twice"
    return None


def _column_scaling(items: list[ItemSignal]) -> dict[int, str]:
    """id(item) -> its mis-scaling. Where some integer items hold only 0..1, the all-zero
    integer items of the column are the same export: their values rounded down to 0."""
    reasons = {id(i): r for i in items if (r := _scaling(i)) is not None}
    if "integer_holds_0_1" in reasons.values():
        for i in items:
            if i.dtype and i.dtype[0] in "ui" and i.stored_max == 0 and i.stored_min == 0:
                reasons[id(i)] = "integer_holds_0_1"
    return reasons


def _severity(share: float, warn: float, error: float) -> Severity | None:
    return "error" if share >= error else "warning" if share >= warn else None


def _where(item: ItemSignal, **extra: Any) -> dict[str, Any]:
    r = item.row
    return {"id": r.id, "line": r.line, "split": r.split, **extra}


def _nonfinite(column: str, items: list[ItemSignal]) -> list[Finding]:
    bad = [i for i in items if i.nonfinite]
    if not bad:
        return []
    evidence = {
        "column": column,
        "items_sampled": len(items),
        "items_nonfinite": len(bad),
        "share": round(len(bad) / len(items), 4),
        "examples": [_where(i, nonfinite_values=i.nonfinite) for i in bad[:MAX_EXAMPLES]],
    }
    return [
        Finding(
            "input_nonfinite",
            "error",  # a single NaN input makes the loss of every batch it is in NaN
            evidence,
            f"{len(bad)} sampled {column} items hold NaN or Inf values; each makes the loss of "
            "its batch NaN (the loader refuses them, or drops them under on_error: skip).",
            fix_note="recompute or remove these rows' files (see the examples' ids and lines).",
        )
    ]


def _scaled(column: str, items: list[ItemSignal], reasons: dict[int, str]) -> list[Finding]:
    share = len(reasons) / len(items)
    severity = _severity(share, INPUT_WARN_SHARE, INPUT_ERROR_SHARE)
    if severity is None:
        return []
    counts = Counter(reasons.values())
    top = counts.most_common(1)[0][0]
    examples = [
        _where(i, dtype=i.dtype, min=i.stored_min, max=i.stored_max, reason=reasons[id(i)])
        for i in items
        if id(i) in reasons
    ][:MAX_EXAMPLES]
    evidence = {
        "column": column,
        "items_sampled": len(items),
        "items_misscaled": len(reasons),
        "share": round(share, 4),
        "reasons": dict(counts),
        "examples": examples,
    }
    return [
        Finding(
            "input_scaling",
            severity,
            evidence,
            f"{len(reasons)} of {len(items)} sampled {column} items are stored at the wrong "
            f"scale ({top}), so the model sees almost no contrast in them.",
            fix_note=f"fix the export: {SCALING_NOTES[top]}.",
        )
    ]


def _low_signal(column: str, items: list[ItemSignal], scaled: dict[int, str]) -> list[Finding]:
    judged = [i for i in items if i.readable and id(i) not in scaled]
    if not judged:
        return []
    low = [
        i for i in judged if i.constant or (i.seen_std is not None and i.seen_std < LOW_SIGNAL_STD)
    ]
    share = len(low) / len(judged)
    severity = _severity(share, INPUT_WARN_SHARE, INPUT_ERROR_SHARE)
    if severity is None:
        return []
    stds = sorted(i.seen_std for i in judged if i.seen_std is not None)
    evidence: dict[str, Any] = {
        "column": column,
        "items_sampled": len(judged),
        "items_low_signal": len(low),
        "items_constant": sum(1 for i in low if i.constant),
        "share": round(share, 4),
        "std_limit": LOW_SIGNAL_STD,
        "examples": [
            _where(i, std=None if i.seen_std is None else round(i.seen_std, 5), constant=i.constant)
            for i in low[:MAX_EXAMPLES]
        ],
    }
    if stds:
        evidence["median_std"] = round(stds[len(stds) // 2], 5)
    spread = (
        "carry no variation at all"
        if not stds
        else (f"vary by less than {LOW_SIGNAL_STD:.0%} of their value range")
    )
    return [
        Finding(
            "input_low_signal",
            severity,
            evidence,
            f"{len(low)} of {len(judged)} sampled {column} items {spread} as the model sees "
            "them (blank, near-black or constant), so nothing tells them apart.",
            fix_note="look at the example rows' files: fix the export (exposure, a crop on the "
            "background, an unwritten frame) or drop those rows from the manifest.",
        )
    ]


def _identical(
    column: str, items: list[ItemSignal], scaled: dict[int, str], opts: ReadOptions
) -> list[Finding]:
    """Different stored content, one preprocessed tensor, different groups."""
    judged = [i for i in items if i.readable and id(i) not in scaled and not i.constant]
    by_seen: dict[tuple[str, str | None], list[ItemSignal]] = defaultdict(list)
    for i in judged:
        by_seen[(i.row.split, i.seen_key)].append(i)
    clashes = []
    for members in by_seen.values():
        stored = {i.stored_key for i in members}
        if len(stored) > 1 and len({i.row.group for i in members}) > 1:
            clashes.append(members)
    affected = sum(len(m) for m in clashes)
    share = affected / max(len(judged), 1)
    severity = _severity(share, WARN_SHARE, ERROR_SHARE)
    if severity is None:
        return []
    evidence = {
        "column": column,
        "items_sampled": len(judged),
        "items_identical": affected,
        "share": round(share, 4),
        "examples": [
            {
                "ids": [i.row.id for i in m[:MAX_EXAMPLES]],
                "lines": [i.row.line for i in m[:MAX_EXAMPLES]],
                "groups": [i.row.group for i in m[:MAX_EXAMPLES]],
                "split": m[0].row.split,
            }
            for m in clashes[:MAX_EXAMPLES]
        ],
    }
    fix = {}
    if column in DETAIL_KEYS:
        key, attr = DETAIL_KEYS[column]
        evidence[key] = getattr(opts, attr)
        fix = {key: 2 * getattr(opts, attr)}
    return [
        Finding(
            "inputs_identical",
            severity,
            evidence,
            f"{affected} of {len(judged)} sampled {column} items are different files that the "
            "loader's resize / crop turns into identical tensors under different groups, so "
            "the model cannot tell them apart.",
            fix=fix,
            fix_note="keep more detail (a larger size / length), or give these rows one group.",
        )
    ]


def check_input_signal(
    splits: dict[str, list[Any]], opts: ReadOptions, manifest: str = "manifest"
) -> list[Finding]:
    """Judge every media and array column on a seeded sample of each split.

    Args:
        splits: split name -> its rows.
        opts: the run's read options (the loader's sizes, frames and lengths).
        manifest: the manifest path, for the loader's messages.

    Returns:
        At most one finding of each code per column.
    """
    by_column: dict[str, list[ItemSignal]] = defaultdict(list)
    for name in sorted(splits):
        for item in measure_split(splits[name], opts, manifest, SIGNAL_ROWS_PER_SPLIT, SIGNAL_SEED):
            by_column[item.column].append(item)
    findings: list[Finding] = []
    for column, items in sorted(by_column.items()):
        findings += _nonfinite(column, items)
        scaled = _column_scaling(items)
        findings += _scaled(column, items, scaled)
        findings += _low_signal(column, items, scaled)
        findings += _identical(column, items, scaled, opts)
    return findings
