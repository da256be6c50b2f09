"""The report's figures as PNG data URIs: validation metrics over epochs beside the
training loss, and the doctor's six panels (doctor/report.py's `curves_figure`)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from contrastkit.doctor.report import curves_figure

CURVE_DPI = 80  # 10 x 3.6 in -> 800 x 288 px: legible, ~40 KB
PANELS_DPI = 60  # the doctor's 16 x 9 in figure -> 960 x 540 px, ~120 KB
CURVE_METRICS = ("R@1", "R@5")
# `<split>/<query>_to_<gallery>/<metric>` (the flat keys of eval/evaluate.py).
_RETRIEVAL_KEY = re.compile(r"^(?P<split>[^/]+)/(?P<dir>[^/]+_to_[^/]+)/(?P<metric>[^/]+)$")


def figure_uri(fig: Figure, dpi: int) -> str:
    """A matplotlib figure as a PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def val_series(metrics: list[dict[str, Any]], split: str) -> dict[str, tuple[list, list]]:
    """`<direction> <metric>` -> (epochs, values) from metrics.jsonl's evaluation records.

    An evaluation record's `epoch` is the number of epochs completed (1.0 after the first);
    a later record for the same epoch (a resumed run) replaces the earlier one.
    """
    latest: dict[str, dict[float, float]] = {}
    for rec in metrics:
        for key, value in rec.items():
            m = _RETRIEVAL_KEY.match(key)
            if m and m["split"] == split and m["metric"] in CURVE_METRICS:
                epoch = float(rec.get("epoch", 0.0))
                latest.setdefault(f"{m['dir']} {m['metric']}", {})[epoch] = float(value)
    return {k: (sorted(v), [v[e] for e in sorted(v)]) for k, v in sorted(latest.items())}


def loss_series(metrics: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """(steps, train/loss) from metrics.jsonl, the last record per step."""
    by_step = {int(r["step"]): float(r["train/loss"]) for r in metrics if "train/loss" in r}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def curves_uri(metrics: list[dict[str, Any]], split: str) -> str | None:
    """Validation R@1 / R@5 per direction over epochs (left) and the training loss (right)."""
    series, (steps, losses) = val_series(metrics, split), loss_series(metrics)
    if not series and not steps:
        return None
    fig = Figure(figsize=(10, 3.6))
    left, right = fig.subplots(1, 2)
    for label, (epochs, values) in series.items():
        left.plot(epochs, values, marker="o", label=label)
    left.set_title(f"{split} retrieval over epochs")
    left.set_xlabel("epoch")
    left.set_ylabel("recall")
    left.grid(alpha=0.3)
    if series:
        left.legend(fontsize=7)
    else:
        left.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=left.transAxes)
    right.plot(steps, losses, color="tab:red")
    right.set_title("training loss")
    right.set_xlabel("step")
    right.set_ylabel("loss (weighted sum)")
    right.grid(alpha=0.3)
    fig.tight_layout()
    return figure_uri(fig, CURVE_DPI)


def doctor_panels_uri(signals: list[dict[str, Any]], run_dir: Path | None = None) -> str | None:
    """The six panels: the run's training_curves.png when it is at least as new as
    signals.jsonl (the doctor draws it at the end of every diagnosis; drawing it again
    is most of a report's time), else drawn from `signals`."""
    if run_dir is not None:
        png, sig = run_dir / "training_curves.png", run_dir / "signals.jsonl"
        if png.is_file() and (not sig.is_file() or png.stat().st_mtime >= sig.stat().st_mtime):
            return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
    return figure_uri(curves_figure(signals), PANELS_DPI) if signals else None
