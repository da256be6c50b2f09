"""Rows training loses: those skipped by `data.on_error: skip`, and those without the
label or attributes a head or objective needs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from contrastkit.config import Config
from contrastkit.doctor.data_checks.thresholds import MAX_EXAMPLES
from contrastkit.doctor.findings import Finding


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
