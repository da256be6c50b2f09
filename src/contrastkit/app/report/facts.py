"""What the report states about a run, read from its files only (no model, no data).

The run directory may belong to a run still training: every file is read defensively
(a torn last JSONL line is ignored), and a missing `summary.json` means the run has not
finished.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contrastkit.config import Config, load_config
from contrastkit.doctor.findings import Finding, read_findings
from contrastkit.doctor.run import read_jsonl, read_run_info, read_signals
from contrastkit.errors import RunDirError
from contrastkit.run_io import read_json, read_text

# A run whose metrics / signals changed this recently, without a summary.json, is taken
# to be training still; older than that it stopped (crashed or killed) before the end.
RUNNING_WINDOW_S = 600.0
# Finding codes produced by the data doctor (doctor/data_checks/) rather than by the run.
DATA_CODES = frozenset(
    {"duplicate_groups", "split_leakage", "rows_skipped", "labels_missing", "small_groups",
     "false_negatives"}
)  # fmt: skip


@dataclass
class RunFacts:
    """Everything the report's text parts need, read from the run directory."""

    run_dir: Path
    config: Config
    config_text: str
    config_hash: str
    status: str
    wall_s: float | None
    summary: dict[str, float]
    metrics: list[dict[str, Any]]
    signals: list[dict[str, Any]]
    findings: list[Finding]
    data_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    rows_skipped: int | None = None

    @property
    def name(self) -> str:
        """The run's `name` from its config."""
        return self.config.name


SUMMARY_FILE = "summary.json"


def read_summary(run_dir: Path) -> dict[str, float]:
    """summary.json (flat `<split>/<q>_to_<g>/<metric>` -> number); {} before the run ends.

    Raises:
        RunDirError: the file is damaged (`run_io`), or a value is not a number.
    """
    path = Path(run_dir) / SUMMARY_FILE
    summary = read_json(path, default={})
    for key, value in summary.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RunDirError(
                f"{path} is damaged: {key!r} is {type(value).__name__}, not a number; "
                "`contrastkit eval RUN_DIR` recomputes the metrics"
            )
    return summary


def config_hash(text: str) -> str:
    """First 12 hex digits of SHA-256 over the resolved config with sorted keys, so two
    runs with the same settings share a hash whatever order the YAML was written in."""
    canonical = json.dumps(yaml.safe_load(text), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _status(run_dir: Path, recorded: str | None, finished: bool) -> tuple[str, float | None]:
    """(status, seconds from config.yaml to the last write). run.json's status is taken as
    written, except that a "running" run whose files have not changed for
    `RUNNING_WINDOW_S` is reported as stopped (killed before it could say so)."""
    written = [
        p.stat().st_mtime
        for p in (run_dir / "metrics.jsonl", run_dir / "signals.jsonl", run_dir / "summary.json")
        if p.is_file()
    ]
    start = (run_dir / "config.yaml").stat().st_mtime
    last = max(written, default=start)
    status = recorded or ("finished" if finished else "running")
    if status == "running" and time.time() - last >= RUNNING_WINDOW_S:
        status = "stopped (no update for 10+ min)"
    return status, last - start


def read_facts(run_dir: str | Path, findings: list[Finding] | None = None) -> RunFacts:
    """Read a run directory written by `contrastkit train` (finished or not).

    Args:
        findings: the run's findings when the caller has them (else findings.json).

    Raises:
        RunDirError: no config.yaml in the folder.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a run directory: config.yaml is missing")
    text = read_text(run_dir / "config.yaml")
    cfg = load_config(run_dir / "config.yaml")
    summary = read_summary(run_dir)
    info = read_run_info(run_dir)
    status, wall = _status(run_dir, info.get("status"), bool(summary))
    if summary.get("train/seconds") is not None:
        wall = float(summary["train/seconds"])
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    skipped = info.get("rows_skipped", summary.get("data/rows_skipped"))
    return RunFacts(
        run_dir=run_dir,
        config=cfg,
        config_text=text,
        config_hash=config_hash(text),
        status=status,
        wall_s=wall,
        summary=summary,
        metrics=metrics,
        signals=read_signals(run_dir),
        findings=read_findings(run_dir / "findings.json") if findings is None else findings,
        data_rows=dict(info.get("splits", {})),
        rows_skipped=None if skipped is None else int(skipped),
    )


def data_summary(bundle: Any) -> dict[str, dict[str, int]]:
    """Rows and distinct groups per split of a built data bundle (a streamed split, which
    holds no group ids in memory, reports its shard index's `num_groups`)."""
    return {
        name: {
            "rows": len(ds),
            "groups": getattr(ds, "num_groups", None) or len(set(ds.group_ids.tolist())),
        }
        for name, ds in bundle.splits.items()
    }
