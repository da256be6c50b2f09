"""`contrastkit compare`: runs side by side — the config keys that differ, the final
metrics with the best value of each marked, and their curves overlaid on one HTML page.

Runs come as run directories, or as the trials of an Optuna study (`--study URL`): a
trial's run directory is the `run_dir` user attribute `sweep` records, else
`RUN_ROOT/trial_NNN` (the folder `sweep` trains each trial in).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from contrastkit.app.report.facts import read_summary
from contrastkit.app.report.html import fmt, page
from contrastkit.app.report.output import write_atomic
from contrastkit.app.report.plots import CURVE_DPI, figure_uri, loss_series, val_series
from contrastkit.doctor.run import read_jsonl
from contrastkit.errors import ConfigError, RunDirError

# Final metrics compared: retrieval headline metrics, probes and captioning scores.
COMPARED = re.compile(
    r"/(R@1|R@5|R@10|median_rank|mAP|class_R@1|knn_accuracy|zero_shot_accuracy"
    r"|linear_probe_accuracy)$|/captioning/"
)
LOWER_IS_BETTER = re.compile(r"(rank|loss|error)$")  # everything else: higher is better


@dataclass
class RunView:
    """What compare reads of one run: its flattened config, summary and metric records."""

    label: str
    run_dir: Path
    config: dict[str, Any]
    summary: dict[str, float]
    metrics: list[dict[str, Any]]
    val_split: str


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config dict -> {"train.lr": 0.001, "loss.objectives.0.type": "clip", ...}."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(data, list) and data and any(isinstance(v, dict | list) for v in data):
        out = {}
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    return {prefix[:-1]: data}


def load_view(run_dir: str | Path, label: str | None = None) -> RunView:
    """Read one run directory (finished or still running).

    Raises:
        RunDirError: no config.yaml there.
    """
    from contrastkit.config import load_config

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a run directory: config.yaml is missing")
    cfg = load_config(run_dir / "config.yaml")
    summary = read_summary(run_dir)
    return RunView(
        label=label or run_dir.name,
        run_dir=run_dir,
        config=flatten(cfg.model_dump(mode="json")),
        summary=summary,
        metrics=read_jsonl(run_dir / "metrics.jsonl"),
        val_split=cfg.data.val_split or "val",
    )


def load_views(runs: list[tuple[str | None, Path]]) -> list[RunView]:
    """`load_view` for each (label or None, run dir); folder names that repeat (two
    `run` folders) are labelled by their whole path instead."""
    names = [path.name for _, path in runs]
    return [
        load_view(path, label or (path.name if names.count(path.name) == 1 else str(path)))
        for label, path in runs
    ]


def study_run_dirs(storage: str, study_name: str | None, run_root: Path) -> list[tuple[str, Path]]:
    """(label, run dir) of each finished or pruned trial of an Optuna study.

    Raises:
        ConfigError: the study cannot be opened, or a trial's run directory is missing.
    """
    from contrastkit.app.sweep import import_optuna, open_study

    study = open_study(import_optuna(), storage, False, study_name=study_name)
    out = []
    for trial in study.trials:
        if trial.state.name not in ("COMPLETE", "PRUNED"):
            continue
        path = Path(trial.user_attrs.get("run_dir", run_root / f"trial_{trial.number:03d}"))
        if not (path / "config.yaml").is_file():
            raise ConfigError(
                f"--study: trial {trial.number}'s run directory {path} is missing; "
                "pass --run-root (the sweep's --run-root)"
            )
        out.append((f"trial_{trial.number:03d} ({trial.state.name.lower()})", path))
    if not out:
        raise ConfigError(f"--study {storage}: no finished or pruned trial to compare")
    return out


def config_differences(views: list[RunView]) -> dict[str, list[Any]]:
    """Config keys whose value is not the same in every run (`name` included)."""
    keys = sorted({k for v in views for k in v.config})
    out = {}
    for key in keys:
        values = [v.config.get(key, "-") for v in views]
        if any(
            json.dumps(x, sort_keys=True) != json.dumps(values[0], sort_keys=True) for x in values
        ):
            out[key] = values
    return out


def final_metrics(views: list[RunView]) -> dict[str, list[float | None]]:
    """Compared summary metric -> its value in each run (None where a run lacks it)."""
    keys = sorted({k for v in views for k in v.summary if COMPARED.search(k)})
    return {k: [v.summary.get(k) for v in views] for k in keys}


def best_indices(key: str, values: list[float | None]) -> set[int]:
    """Indices of the best value (lower for ranks / losses / errors, else higher; ties all
    marked); empty when fewer than two runs have the metric or all of them tie."""
    present = [(x, i) for i, x in enumerate(values) if x is not None and x == x]
    if len(present) < 2 or len({x for x, _ in present}) == 1:
        return set()
    lower = bool(LOWER_IS_BETTER.search(key))
    best = (min if lower else max)(x for x, _ in present)
    return {i for x, i in present if x == best}


def print_comparison(views: list[RunView], console: Console) -> None:
    """The two tables: differing config keys, then final metrics (best marked with *)."""
    diff = config_differences(views)
    table = Table(title="config keys that differ")
    table.add_column("key", overflow="fold")
    for v in views:
        table.add_column(v.label, overflow="fold")
    for key, values in diff.items():
        table.add_row(key, *[_short(x) for x in values])
    console.print(table if diff else "[green]the configs are identical[/green]")
    metrics = Table(title="final metrics (* best)")
    metrics.add_column("metric", overflow="fold")
    for v in views:
        metrics.add_column(v.label, justify="right", overflow="fold")
    for key, values in final_metrics(views).items():
        best = best_indices(key, values)
        cells = [
            "-" if x is None else fmt(x) + (" *" if i in best else "") for i, x in enumerate(values)
        ]
        metrics.add_row(key, *cells)
    console.print(metrics)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def overlay_uri(views: list[RunView]) -> str:
    """Each run's validation R@1 (per direction) and training loss on shared axes."""
    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    for i, v in enumerate(views):
        color = f"C{i % 10}"
        for j, (label, (epochs, values)) in enumerate(val_series(v.metrics, v.val_split).items()):
            if label.endswith("R@1"):
                style = ("-", "--", ":", "-.")[j % 4]
                left.plot(
                    epochs, values, style, color=color, marker="o", label=f"{v.label} {label}"
                )
        steps, losses = loss_series(v.metrics)
        marker = "o" if len(steps) < 30 else None  # a short run stays visible
        right.plot(steps, losses, color=color, marker=marker, label=v.label)
    left.set(title="validation R@1 over epochs", xlabel="epoch", ylabel="R@1")
    right.set(title="training loss", xlabel="step", ylabel="loss")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return figure_uri(fig, CURVE_DPI)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_) + "</tr>" for rows_ in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_compare_html(views: list[RunView], out: str | Path) -> Path:
    """compare.html: the two tables and the overlaid curves, self-contained."""
    labels = [v.label for v in views]
    diff_rows = [
        [f"<td>{html.escape(k)}</td>", *[f"<td>{html.escape(_short(x))}</td>" for x in vals]]
        for k, vals in config_differences(views).items()
    ]
    metric_rows = []
    for key, values in final_metrics(views).items():
        best = best_indices(key, values)
        cells = [
            f"<td class='num{' best' if i in best else ''}'>{'-' if x is None else fmt(x)}"
            f"{' ★' if i in best else ''}</td>"
            for i, x in enumerate(values)
        ]
        metric_rows.append([f"<td>{html.escape(key)}</td>", *cells])
    runs = "".join(f"<li>{html.escape(v.label)}: {html.escape(str(v.run_dir))}</li>" for v in views)
    sections = [
        ("", f"<h1>compare {len(views)} runs</h1><ul>{runs}</ul>"),
        ("Config keys that differ", _html_table(["key", *labels], diff_rows) if diff_rows
         else "<p>the configs are identical</p>"),
        ("Final metrics (★ best)", _html_table(["metric", *labels], metric_rows)),
        ("Curves", f"<img class=fig alt='overlaid curves' src='{overlay_uri(views)}'>"),
    ]  # fmt: skip
    path = Path(out)
    write_atomic(path, page("contrastkit compare", sections))
    return path
