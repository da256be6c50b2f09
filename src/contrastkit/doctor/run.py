"""Entry points behind `contrastkit doctor data CONFIG` and `contrastkit doctor run RUN_DIR`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from contrastkit.config import Config, load_config
from contrastkit.doctor.data_checks import check_data
from contrastkit.doctor.findings import Finding, read_findings, sort_findings, write_findings
from contrastkit.doctor.monitors.base import SIGNALS_FILE
from contrastkit.doctor.report import plot_curves
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.rules.start import eval_records
from contrastkit.errors import RunDirError
from contrastkit.run_io import read_jsonl as read_run_jsonl

DATA_FINDINGS_FILE = "data_findings.json"
RUN_INFO_FILE = "run.json"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file (`run_io.read_jsonl`: damaged lines skipped with a warning).

    Raises:
        RunDirError: the path is a directory or unreadable.
    """
    return read_run_jsonl(path)


def read_signals(run_dir: Path) -> list[dict[str, Any]]:
    """`signals.jsonl`, keeping the last record per (monitor, step, event): a resumed run
    re-measures the steps after its checkpoint and appends them again."""
    latest: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for rec in read_jsonl(run_dir / SIGNALS_FILE):
        latest[(rec.get("monitor"), rec.get("step"), rec.get("event"))] = rec
    return sorted(latest.values(), key=lambda r: r.get("step", 0))


def nonfinite_metrics(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Signal records for logged loss values that are NaN / Inf (between doctor cadences)."""
    out = []
    for rec in metrics:
        bad = [
            k
            for k, v in rec.items()
            if "loss" in k and isinstance(v, float) and not math.isfinite(v)
        ]
        if bad or rec.get("train/bad_step"):  # the engine skipped a non-finite step
            out.append({"step": rec.get("step", 0), "monitor": "metrics", "nonfinite_steps": 1})
    return out


def stop_record(
    step: int, error: BaseException | str, *, nonfinite: bool = False
) -> dict[str, Any]:
    """What a run that stopped early puts under `stopped` in run.json, so that the
    diagnosis explains the stop: `loss_nan` when it stopped on non-finite steps
    (`nonfinite=True`), else `run_stopped` naming the error. Use it with the step reached::

        update_run_info(run_dir, stopped=stop_record(step, exc, nonfinite=...))
    """
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {"step": int(step), "nonfinite": bool(nonfinite), "error": text[:500]}


def _stop_signals(info: dict[str, Any]) -> list[dict[str, Any]]:
    stopped = info.get("stopped")
    if not isinstance(stopped, dict):
        return []
    return [{**stopped, "monitor": "run", "event": "stopped"}]


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """`run.json` (global batch size, world size, rows per split, status), {} if absent or
    unreadable (a run from before it existed, or a torn write)."""
    path = Path(run_dir) / RUN_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def update_run_info(run_dir: Path, **values: Any) -> dict[str, Any]:
    """Merge `values` into `run.json`, written atomically (temp file + rename)."""
    path = Path(run_dir) / RUN_INFO_FILE
    info = {**read_run_info(run_dir), **values}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return info


def diagnose_run(run_dir: str | Path, cfg: Config | None = None) -> list[Finding]:
    """The one end-of-run diagnosis, used by `train`, `doctor run` and the report.

    It reads what the run left on disk, never in-memory state, so a finished run, a
    running one, a resumed one and a crashed one are judged alike:
    - `signals.jsonl`, de-duplicated (a resumed run re-measures steps after its checkpoint);
    - non-finite losses logged in `metrics.jsonl` between the doctor's cadence;
    - `data_findings.json`, the data doctor's findings from before training;
    - `run.json`: the *global* batch size (per-rank batch x accumulate x world size), which
      is what chance-level loss and the in-batch negative count depend on, and
      `stopped` (`stop_record`) for a run that ended early.
    Writes `findings.json` and `training_curves.png`; returns the findings.

    Raises:
        RunDirError: the folder or its config.yaml is missing.
    """
    run_dir = Path(run_dir)
    if cfg is None:
        if not (run_dir / "config.yaml").is_file():
            raise RunDirError(f"{run_dir} is not a run directory: config.yaml is missing")
        cfg = load_config(run_dir / "config.yaml")
    signals = read_signals(run_dir)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    signals += nonfinite_metrics(metrics)
    signals += eval_records(metrics, cfg)  # at-start and periodic evaluations
    info = read_run_info(run_dir)
    signals += _stop_signals(info)  # a run that ended early: why (stop_record)
    data = read_findings(run_dir / DATA_FINDINGS_FILE)
    batch = info.get("global_batch_size")
    findings = diagnose(signals, cfg, batch_size=int(batch) if batch else None, data_findings=data)
    write_findings(findings, run_dir / "findings.json")
    if signals:
        plot_curves(signals, run_dir / "training_curves.png")
    return findings


def doctor_run(run_dir: str | Path) -> list[Finding]:
    """`contrastkit doctor run`: `diagnose_run` (the CLI then writes the app's report.html)."""
    return diagnose_run(Path(run_dir))


def doctor_data(
    cfg: Config,
    *,
    embed_texts: Callable[[list[str]], Tensor] | None = None,
    out: str | Path | None = None,
) -> list[Finding]:
    """Build the datasets of `cfg` and run the data checks (before any training).

    Args:
        cfg: the run config.
        embed_texts: optional text embedder for the near-duplicate (false negative) search.
        out: if given, the findings are also written there (e.g. run_dir/data_findings.json).
    """
    from contrastkit.data import build_datasets

    findings = sort_findings(check_data(build_datasets(cfg.data), cfg, embed_texts=embed_texts))
    if out is not None:
        write_findings(findings, out)
    return findings
