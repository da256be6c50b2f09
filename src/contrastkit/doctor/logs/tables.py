"""Metric tables: Lightning's `CSVLogger` `metrics.csv`, and plain CSV / JSONL files.

All three are one record per logged step: a `step` column (key) and named scalars. A
W&B history export (`run.history()`, `wandb-history.jsonl`) has `_step`, used first; its
other `_` keys (`_runtime`, `_timestamp`) are W&B's bookkeeping and skipped. A table of
open_clip's or the HF Trainer's own tags (as they log to W&B) is read as theirs.
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

from contrastkit.doctor.logs.source import (
    LIGHTNING,
    PLAIN,
    LogSource,
    as_number,
    as_step,
    host_by_tags,
)
from contrastkit.errors import DataError

STEP = "step"
WANDB_STEP = "_step"
LIGHTNING_FILE = "metrics.csv"
# Coordinates a table may carry besides the step; never diagnosed as scalars.
_COORDINATES = (STEP, "epoch")
_WANDB_PREFIX = "_"


def _step_key(keys: Iterable[str]) -> str | None:
    """W&B's own `_step` when there (open_clip's `step` key is missing from its val rows),
    else `step`."""
    keys = set(keys)
    return WANDB_STEP if WANDB_STEP in keys else STEP if STEP in keys else None


def _records(source: LogSource, rows: Iterable[tuple[int, dict[str, Any]]], key: str) -> LogSource:
    """Add every numeric cell of `rows` ((line number, record) pairs) to `source`, at
    the step in column `key`."""
    for line, row in rows:
        step = as_step(row.get(key))
        if step is None:
            raise DataError(
                f"{source.path}, line {line}: `{key}` is {row.get(key)!r}, not an integer step"
            )
        for name, value in row.items():
            number = as_number(value)
            internal = str(name).startswith(_WANDB_PREFIX)
            if name not in _COORDINATES and not internal and number is not None:
                source.add(str(name), step, number)
    if source.host == PLAIN:
        source.host = host_by_tags(source.scalars)
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
    key = _step_key(header)
    if key is None:
        raise DataError(
            f"{path}: no `{STEP}` column (columns: {', '.join(header[:12]) or 'none'}); a "
            "metric table needs one record per logged step with its step number"
        )
    host = LIGHTNING if path.name == LIGHTNING_FILE else PLAIN
    fmt = "lightning_csv" if host == LIGHTNING else "csv"
    return _records(LogSource(path, fmt, host), rows, key)


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
        if _step_key(row) is None:
            raise DataError(
                f"{path}, line {i}: no `{STEP}` key (keys: {', '.join(list(row)[:12])}); a "
                "metric file needs one record per logged step with its step number"
            )
        rows.append((i, row))
    keys = {_step_key(row) for _, row in rows}
    key = WANDB_STEP if WANDB_STEP in keys else STEP
    return _records(LogSource(path, "jsonl", PLAIN), rows, key)
