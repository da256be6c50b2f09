"""What a run writes into its run dir beside the engine's own files.

At the start (once everything is validated): config.yaml, the run facts for run.json, the
data doctor's findings and the rows `data.on_error: skip` dropped. At the end, success or
not: the doctor's diagnosis, then report.html for a finished run. The end-of-run writers
log their failures and never raise over the run's own outcome.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from contrastkit.app.report.facts import data_summary
from contrastkit.config import Config, dump_config
from contrastkit.doctor.run import DATA_FINDINGS_FILE
from contrastkit.errors import ContrastkitError
from contrastkit.protocols import EmbeddingModel
from contrastkit.train.distributed import DistInfo

log = logging.getLogger(__name__)


def write_config(cfg: Config, run_dir: Path) -> None:
    """config.yaml, with local manifest and shard paths made absolute."""
    saved = cfg.model_copy(deep=True)
    manifest = Path(saved.data.manifest)
    if saved.data.manifest and not saved.data.manifest.startswith("builtin:") and manifest.exists():
        saved.data.manifest = str(manifest.resolve())  # so load_run works from any cwd
    if isinstance(saved.data.shards, str) and Path(saved.data.shards).is_dir():
        saved.data.shards = str(Path(saved.data.shards).resolve())
    (run_dir / "config.yaml").write_text(dump_config(saved))


def check_run_data(bundle: Any, cfg: Config) -> list:
    """Run the data doctor (writes nothing); stop when a finding reaches `doctor.fail_on`.

    Called before the run writes its first file, so a stop leaves the run directory as it
    was; the findings are written by `write_data_findings` once everything validated.

    Raises:
        ContrastkitError: a finding reaches `doctor.fail_on`; the message lists them all.
    """
    if not (cfg.doctor.enabled and cfg.doctor.check_data):
        return []
    from contrastkit.doctor import check_data, should_fail

    findings = list(check_data(bundle, cfg))
    if should_fail(findings, cfg.doctor.fail_on):
        lines = "; ".join(f"{f.code} ({f.severity}): {f.cause}" for f in findings)
        raise ContrastkitError(
            f"data doctor stopped the run (doctor.fail_on: {cfg.doctor.fail_on}); nothing "
            f"was written. Findings: {lines}"
        )
    return findings


def write_data_findings(findings: list, cfg: Config, run_dir: Path) -> None:
    """data_findings.json from `check_run_data`'s findings (only when the data doctor ran)."""
    if not (cfg.doctor.enabled and cfg.doctor.check_data):
        return
    from contrastkit.doctor import write_findings

    write_findings(findings, run_dir / DATA_FINDINGS_FILE)


def run_info(cfg: Config, bundle: Any, info: DistInfo) -> dict[str, Any]:
    """What the doctor and the report need to know about the run that no config holds:
    the *global* batch (per-rank batch x accumulate x world size) and the data's shape."""
    return {
        "world_size": info.world_size,
        "global_batch_size": cfg.data.batch_size * cfg.train.accumulate * info.world_size,
        "splits": data_summary(bundle),  # the report's data table reads it back
        "rows_skipped": len(bundle.skipped),
    }


def log_skipped(bundle: Any, run_dir: Path) -> None:
    """Rows dropped by `data.on_error: skip` go to the log and to metrics.jsonl, never silently."""
    if not bundle.skipped:
        return
    for row in bundle.skipped[:10]:
        log.warning(
            "skipped %s row %s (%s): column %r: %s",
            row.manifest,
            row.line,
            row.id,
            row.column,
            row.reason,
        )
    log.warning(
        "data.on_error=skip dropped %d rows (details in findings.json)", len(bundle.skipped)
    )
    record = {"step": 0, "data/rows_skipped": len(bundle.skipped)}
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


def diagnose_end(cfg: Config, run_dir: Path) -> None:
    """The end-of-run diagnosis (`doctor.run.diagnose_run`), also after a failed run: a
    run that stops early must still say why in findings.json. A failure of the diagnosis
    itself is logged, never raised over the run's own outcome."""
    if not cfg.doctor.enabled:
        return
    from contrastkit.doctor.run import diagnose_run

    try:
        diagnose_run(run_dir, cfg)
    except Exception:  # noqa: BLE001 - an observer's bug must not mask the run's result
        log.exception("the doctor failed to diagnose %s; `contrastkit doctor run` retries", run_dir)


def write_run_report(run_dir: Path, model: EmbeddingModel, bundle: Any) -> None:
    """report.html from the model and data in hand (best checkpoint loaded by the final
    evaluation). Like the diagnosis, a failure is logged and never loses the run."""
    from contrastkit.app.report import write_report

    try:
        write_report(run_dir, model=model, bundle=bundle)
    except Exception:  # noqa: BLE001 - the run is done; `contrastkit report` retries
        log.exception("report.html not written; `contrastkit report %s` retries", run_dir)
