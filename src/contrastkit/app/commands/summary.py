"""The metrics table printed after training and evaluation."""

from __future__ import annotations

from rich.table import Table

from contrastkit.app.commands import console


def print_summary(metrics: dict[str, float], title: str = "") -> None:
    """Rank metrics as a table: one row per split and direction."""
    columns = ["R@1", "R@5", "R@10", "median_rank", "class_R@1"]
    rows: dict[str, dict[str, float]] = {}
    other: dict[str, float] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and "_to_" in parts[1] and parts[2] in columns:
            rows.setdefault(f"{parts[0]}  {parts[1]}", {})[parts[2]] = value
        else:
            other[key] = value
    table = Table(title=title or None)
    table.add_column("split  direction")
    present = [c for c in columns if any(c in r for r in rows.values())]
    for c in present:
        table.add_column(c, justify="right")
    for name, r in rows.items():
        table.add_row(name, *[_fmt(r.get(c)) for c in present])
    if rows:
        console.print(table)
    suffixes = (
        "/knn_accuracy",
        "/zero_shot_accuracy",
        "/linear_probe_accuracy",
        "captioning/BLEU",
        "captioning/ROUGE-L",
        "captioning/numeric_fidelity",
        "captioning/numeric_error",
    )
    for key in suffixes:
        for k, v in other.items():
            if k.endswith(key):
                console.print(f"{k}: {_fmt(v)}")


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.1f}" if abs(v) >= 2 else f"{v:.3f}"
