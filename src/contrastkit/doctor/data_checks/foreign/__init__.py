"""The data doctor for datasets of other tools: `contrastkit doctor data FILE`.

open_clip CSV/TSV, COCO captions JSON, Parquet and `datasets.save_to_disk` folders are read
into the manifest rows the data checks already judge (`sources` -> `rows`), and judged as
the host sees them (`check`): every row its own class, so shared images or texts are
false negatives in its batches. `doctor_foreign_data` also writes `data_findings.json`.
"""

from __future__ import annotations

from pathlib import Path

from contrastkit.doctor.data_checks.foreign.check import ForeignOptions, check_foreign_data
from contrastkit.doctor.data_checks.foreign.sources import Columns
from contrastkit.doctor.findings import Finding, sort_findings, write_findings
from contrastkit.doctor.run import DATA_FINDINGS_FILE


def doctor_foreign_data(
    files: list[Path], opts: ForeignOptions, out: Path | None = None
) -> tuple[list[Finding], Path]:
    """Check `files` and write `data_findings.json` into `out` (default: the current folder).

    Returns:
        The sorted findings and the file written.
    """
    findings = sort_findings(check_foreign_data(files, opts))
    folder = Path.cwd() if out is None else out
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DATA_FINDINGS_FILE
    write_findings(findings, path)
    return findings, path


__all__ = ["Columns", "ForeignOptions", "check_foreign_data", "doctor_foreign_data"]
