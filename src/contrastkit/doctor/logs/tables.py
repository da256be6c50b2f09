"""Metric tables: Lightning's `CSVLogger` `metrics.csv`, and plain CSV / JSONL files.

All three are one record per logged step: a `step` column (key) and named scalars.
Lightning writes one row per `log_metrics` call with blanks for the metrics not logged
then (train and validation rows interleave), plus an `epoch` column; blanks are skipped
here, so every metric keeps only the steps it was logged at.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from contrastkit.doctor.logs.source import LIGHTNING, PLAIN, LogSource, as_number, as_step
from contrastkit.errors import DataError

STEP = "step"
LIGHTNING_FILE = "metrics.csv"
# Coordinates a table may carry besides the step; never diagnosed as scalars.
_COORDINATES = (STEP, "epoch")


def _records(source: LogSource, rows: Iterable[tuple[int, dict[str, Any]]]) -> LogSource:
    """Add every numeric cell of `rows` ((line number, record) pairs) to `source`."""
    for line, row in rows:
        step = as_step(row.get(STEP))
        if step is None:
            raise DataError(
                f"{source.path}, line {line}: `{STEP}` is {row.get(STEP)!r}, not an integer step"
            )
        for key, value in row.items():
            number = as_number(value)
            if key not in _COORDINATES and number is not None:
                source.add(str(key), step, number)
    return source.finish()


def read_csv_table(path: Path) -> LogSource:
    """A CSV metric table; `metrics.csv` is read as Lightning's CSVLogger output.

    Raises:
        DataError: unreadable, empty, or without a `step` column.
    """
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = [(i + 2, row) for i, row in enumerate(reader)]  # line 1 is the header
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from err
    if STEP not in header:
        raise DataError(
            f"{path}: no `{STEP}` column (columns: {', '.join(header[:12]) or 'none'}); a "
            "metric table needs one record per logged step with its step number"
        )
    host = LIGHTNING if path.name == LIGHTNING_FILE else PLAIN
    fmt = "lightning_csv" if host == LIGHTNING else "csv"
    return _records(LogSource(path, fmt, host), rows)


def read_jsonl_table(path: Path) -> LogSource:
    """A JSONL metric file: one JSON object per line, each with an integer `step`.

    Raises:
        DataError: a line that is not a JSON object, or that has no `step`.
    """
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable text file ({err})") from err
    for i, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as err:
            raise DataError(f"{path}, line {i}: not JSON ({err})") from err
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {i}: a JSON {type(row).__name__}, not an object")
        if STEP not in row:
            raise DataError(
                f"{path}, line {i}: no `{STEP}` key (keys: {', '.join(list(row)[:12])}); a "
                "metric file needs one record per logged step with its step number"
            )
        rows.append((i, row))
    return _records(LogSource(path, "jsonl", PLAIN), rows)
