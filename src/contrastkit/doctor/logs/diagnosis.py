"""`diagnose_logs`: the doctor's findings for a run trained by another tool, from its logs.

The logs become signal records (`records.py`), the run becomes a `Config` through
`doctor.hosts.host_config` (objective, starting temperature, peak lr, the at-start
metric), and `diagnose` judges them with the same rules as a contrastkit run. Fixes
are then written in the host's words (`doctor.hosts.fixes.translate_findings`).

Without a batch size (`--batch-size`, HF's `train_batch_size`, open_clip's params.txt)
chance level is
unknown: the contrastive term's own loss is then withheld from the records, so
`loss_at_chance` (and a fixed SigLIP bias, judged against log 1/B) have no input and
say so in `not_run`, while the total loss is still judged for progress and NaN.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contrastkit.config import Config
from contrastkit.doctor.findings import Finding, sort_findings
from contrastkit.doctor.hosts import host_config
from contrastkit.doctor.hosts.fixes import translate_findings
from contrastkit.doctor.logs.coverage import NotRun, not_run
from contrastkit.doctor.logs.discover import find_logs
from contrastkit.doctor.logs.records import (
    LogSignals,
    collect,
    negatives_record,
    signal_records,
)
from contrastkit.doctor.logs.source import HF_TRAINER, LIGHTNING, OPEN_CLIP, PLAIN, LogSource
from contrastkit.doctor.logs.tags import parse_maps
from contrastkit.doctor.report import plot_curves
from contrastkit.doctor.rules import diagnose
from contrastkit.errors import ContrastkitError

OBJECTIVE = "contrastive"
OUT_FOLDER = "doctor"  # default output: PATH/doctor/ (beside the file for a file PATH)
# host_config needs a number; with the contrastive loss withheld (batch size unknown)
# no rule reads it, and `not_run` says what the missing batch size costs.
UNKNOWN_BATCH = 2
# The hosts' clamp of the logit scale: CLIP and open_clip clamp exp(t) at 100.
CLAMP = 100.0
# host_config's lr when the logs hold none (contrastkit's default train.lr).
DEFAULT_LR = 1e-3
# Evaluation metrics whose name holds one of these are better when lower (val losses,
# median / mean ranks); every other metric (recalls, accuracies) is better when higher.
LOWER_IS_BETTER = ("loss", "rank")
# Our reader's host -> the host names of doctor.hosts.fixes.
FIX_HOST = {OPEN_CLIP: "open_clip", HF_TRAINER: "hf", LIGHTNING: "lightning", PLAIN: "plain"}


@dataclass
class LogsDiagnosis:
    """What `diagnose_logs` found and on what it was based."""

    findings: list[Finding]
    not_run: list[NotRun]
    sources: list[LogSource]
    host: str
    batch_size: int | None
    select_metric: str | None
    signals: list[dict[str, Any]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """findings.json: `read_findings` reads its `findings`; the rest says what was read."""
        return {
            "findings": [f.to_dict() for f in sort_findings(self.findings)],
            "not_run": [n.to_dict() for n in self.not_run],
            "logs": [
                {"path": str(s.path), "format": s.format, "host": s.host} for s in self.sources
            ],
            "host": self.host,
            "batch_size": self.batch_size,
            "select_metric": self.select_metric,
            "skipped": [{"path": str(p), "why": why} for p, why in self.skipped],
            "notes": self.notes,
        }


def _direction(metric: str) -> str:
    return "min" if any(w in metric for w in LOWER_IS_BETTER) else "max"


def _select_metric(logs: LogSignals, wanted: str | None) -> str | None:
    """The evaluation metric `worse_than_start` reads: `wanted`, else the first (by
    name) higher-is-better metric with a value at step 0 and after it, else such a
    lower-is-better one."""
    if wanted is not None:
        key = wanted if wanted.startswith("val/") else f"val/{wanted}"
        if key not in logs.val:
            known = ", ".join(sorted(logs.val)) or "none"
            raise ContrastkitError(
                f"--metric {wanted!r}: no such evaluation metric; logged: {known}"
            )
        return key
    judged = [
        k
        for k, pts in sorted(logs.val.items())
        if any(s == 0 for s, _ in pts) and any(s > 0 for s, _ in pts)
    ]
    judged.sort(key=lambda k: _direction(k) == "min")
    return judged[0] if judged else None


def _finite(points: list[tuple[int, float]]) -> list[float]:
    return [v for _, v in points if math.isfinite(v)]


def _config(
    logs: LogSignals, batch: int | None, metric: str | None, siglip: bool, warmup: int
) -> Config:
    """The run as a Config: objective and its starting temperature, peak lr, warm-up,
    last step."""
    scales = [v for v in _finite(logs.train.get("logit_scale", [])) if v > 0]
    lrs = _finite(logs.train.get("lr", []))
    steps = [s for pts in logs.train.values() for s, _ in pts]
    kwargs: dict[str, Any] = {
        "batch_size": batch or UNKNOWN_BATCH,
        "objective": "siglip" if siglip else "clip",
        "objective_name": OBJECTIVE,
        "warmup_steps": warmup,
        # A scale that moves is learned. A fixed SigLIP bias is judged against log 1/B, so
        # with B unknown the SigLIP terms count as learnable and that rule has no input.
        "learnable_temperature": len(set(scales)) > 1 or (siglip and batch is None),
        "max_steps": max(steps) if steps else None,
        "select_metric": metric,
        "select_mode": _direction(metric) if metric else "max",
        # An evaluation before training implies a pretrained model to start from.
        "pretrained": metric is not None,
    }
    kwargs["lr"] = max(lrs) if max(lrs, default=0) > 0 else DEFAULT_LR
    if scales and siglip:
        kwargs["init_logit_scale"] = math.log(scales[0])
    elif scales:
        kwargs["temperature"] = 1.0 / scales[0]
        kwargs["max_logit_scale"] = max(CLAMP, *scales)
    biases = _finite(logs.train.get("logit_bias", []))
    if siglip and biases:
        kwargs["init_logit_bias"] = biases[0]
    return host_config(**kwargs)


def diagnose_logs(
    path: str | Path,
    *,
    batch_size: int | None = None,
    maps: list[str] | tuple[str, ...] = (),
    metric: str | None = None,
) -> LogsDiagnosis:
    """Findings for the run whose logs are at `path`.

    Args:
        path: a log file, an event folder, or a run's folder (see `discover`).
        batch_size: rows per contrastive batch (B, chance level ln B); default: the
            log's own record (HF `train_batch_size`, open_clip's params.txt), else
            unknown.
        maps: `name=tag` items mapping other tag names onto the doctor's signals.
        metric: the evaluation metric to compare with its step-0 value.

    Raises:
        ContrastkitError: a bad argument, path or log (the message names it).
    """
    if batch_size is not None and batch_size < 1:
        raise ContrastkitError(f"--batch-size must be >= 1, got {batch_size}")
    tags = parse_maps(maps)
    found = find_logs(path)
    logged = {t for s in found.sources for t in s.scalars}
    for tag, name in tags.items():
        if tag not in logged:
            raise ContrastkitError(
                f"--map {name}={tag}: no tag {tag!r} in the logs under {path} (tags: "
                f"{', '.join(sorted(logged)[:20]) or 'none'})"
            )
    logs = collect(found.sources, tags)
    notes = list(logs.notes)
    if batch_size is None:
        recorded = [s for s in found.sources if s.batch_size]
        if recorded:
            batch_size = recorded[0].batch_size
            notes.append(recorded[0].batch_note)
    if not logs.train and not logs.val:
        raise ContrastkitError(
            f"{path}: the logs hold no scalar the doctor reads (tags: "
            f"{', '.join(sorted(logged)[:15])}); "
            "name them with --map, e.g. --map loss=TAG"
        )
    if not logs.has("lr"):
        notes.append(
            f"the learning rate is not in the logs: lr-based fixes are relative to "
            f"{DEFAULT_LR:g} (--map lr=TAG to use yours)"
        )
    siglip = logs.has("logit_bias")
    chosen = _select_metric(logs, metric)
    warmup = max((s.warmup_steps or 0 for s in found.sources), default=0)
    cfg = _config(logs, batch_size, chosen, siglip, warmup)
    signals = signal_records(logs, OBJECTIVE, objective_loss=batch_size is not None)
    if batch_size is not None:
        first = min((r["step"] for r in signals), default=0)
        signals.insert(0, negatives_record(first, batch_size))
    host = next((s.host for s in found.sources if s.host != PLAIN), PLAIN)
    findings = diagnose(signals, cfg, batch_size=batch_size or UNKNOWN_BATCH)
    return LogsDiagnosis(
        findings=translate_findings(findings, FIX_HOST[host]),
        not_run=not_run(logs, batch_size=batch_size, siglip=siglip),
        sources=found.sources,
        host=host,
        batch_size=batch_size,
        select_metric=chosen,
        signals=signals,
        skipped=found.skipped,
        notes=notes,
    )


def default_out(path: str | Path) -> Path:
    """PATH/doctor for a folder, the file's folder's doctor/ for a file."""
    path = Path(path)
    return (path if path.is_dir() else path.parent) / OUT_FOLDER


def write_outputs(result: LogsDiagnosis, out: str | Path) -> Path:
    """findings.json (with `not_run` and the logs read) and training_curves.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "findings.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    if result.signals:
        plot_curves(result.signals, out / "training_curves.png")
    return out / "findings.json"
