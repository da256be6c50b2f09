"""Doctor outputs: findings.json, training_curves.png and the findings as a rich table.

The run's report.html (metrics, curves, these findings and panels, retrieval examples) is
the application's: contrastkit.app.report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from contrastkit.doctor.findings import Finding, read_findings, sort_findings, write_findings

__all__ = [
    "curves_figure",
    "plot_curves",
    "print_findings",
    "read_findings",
    "write_findings",
]

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _series(signals: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [
        (int(r["step"]), float(r[key]))
        for r in signals
        if isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)
    ]
    pts.sort()
    return [s for s, _ in pts], [v for _, v in pts]


def _keys(signals: list[dict[str, Any]], prefix: str, suffix: str = "") -> list[str]:
    return sorted({k for r in signals for k in r if k.startswith(prefix) and k.endswith(suffix)})


def _weighted(signals: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for key in _keys(signals, "loss/"):
        term = key[len("loss/") :]
        steps, values = [], []
        for r in signals:
            if key in r and isinstance(r[key], int | float):
                w = 1.0 if term == "total" else float(r.get(f"weight/{term}", 1.0))
                steps.append(int(r["step"]))
                values.append(w * float(r[key]))
        out[term] = (steps, values)
    return out


def curves_figure(signals: list[dict[str, Any]]) -> Figure:
    """Six panels of the run's signals on one 16 x 9 inch figure (Agg, no pyplot state).

    Panels: gradient norms per module, positive / negative similarity, weighted loss
    terms, temperature (logit scale, bias), embedding and parameter drift, and the
    backbone / head gradient ratio.
    """
    fig = Figure(figsize=(16, 9), dpi=100)
    axes = fig.subplots(2, 3)
    panels: list[tuple[str, str, dict[str, tuple[list[int], list[float]]], bool]] = [
        (
            "Gradient norm per module",
            "L2 norm",
            {k[10:]: _series(signals, k) for k in _keys(signals, "grad_norm/")},
            True,
        ),
        (
            "Positive / negative similarity",
            "cosine",
            {
                k[6:]: _series(signals, k)
                for k in ("align/pos_sim", "align/neg_sim", "align/gap")
                if _keys(signals, k)
            },
            False,
        ),
        ("Weighted loss terms", "weight x loss", _weighted(signals), False),
        (
            "Temperature",
            "logit scale / bias",
            {
                k: _series(signals, k)
                for k in _keys(signals, "", "/logit_scale") + _keys(signals, "", "/logit_bias")
            },
            False,
        ),
        (
            "Drift from start",
            "1 - cos (embeddings), rel. L2 (weights)",
            {k[12:]: _series(signals, k) for k in _keys(signals, "embed_drift/", "/drift")}
            | {k[12:]: _series(signals, k) for k in _keys(signals, "param_drift/")},
            False,
        ),
        (
            "Backbone / head gradient ratio",
            "ratio",
            {"backbone/head": _series(signals, "grad_ratio/backbone_head")},
            True,
        ),
    ]
    for ax, (title, ylabel, lines, log) in zip(axes.flat, panels, strict=True):
        drawn = 0
        for label, (steps, values) in lines.items():
            if steps:
                ax.plot(steps, values, label=label, marker="." if len(steps) < 30 else None)
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            positive = all(v > 0 for s, vs in lines.values() for v in vs if math.isfinite(v))
            if log and positive:
                ax.set_yscale("log")
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no data recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def plot_curves(signals: list[dict[str, Any]], path: str | Path) -> Path:
    """Save `curves_figure(signals)` as a PNG (1600 x 900 px), e.g. training_curves.png."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    curves_figure(signals).savefig(path)
    return path


def _summary(evidence: dict[str, Any], limit: int = 6) -> str:
    parts = []
    for k, v in evidence.items():
        if k == "examples" or isinstance(v, dict | list) and len(json.dumps(v)) > 60:
            continue
        parts.append(f"{k}={v}")
        if len(parts) == limit:
            break
    return ", ".join(parts)


def _fix_text(f: Finding) -> str:
    fix = " ".join(f"{k}={json.dumps(v)}" for k, v in f.fix.items())
    return "\n".join(x for x in (fix, f.fix_note) if x)


def print_findings(findings: Iterable[Finding], console: Any = None) -> None:
    """Print findings as a rich table: severity, code, cause + evidence, fix."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    findings = sort_findings(findings)
    if not findings:
        console.print("[green]doctor: no findings[/green]")
        return
    table = Table(title="contrastkit doctor", show_lines=True)
    table.add_column("severity")
    table.add_column("code")
    table.add_column("what and evidence", ratio=3)
    table.add_column("fix", ratio=2)
    for f in findings:
        style = SEVERITY_STYLE[f.severity]
        table.add_row(
            f"[{style}]{f.severity}[/{style}]",
            f.code,
            f"{f.cause}\n[dim]{_summary(f.evidence)}[/dim]",
            _fix_text(f),
        )
    console.print(table)
