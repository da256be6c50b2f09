"""Manifest files (JSONL, CSV, Parquet) -> a list of `Row`s.

A manifest has one row per sample. `id` is required and unique; `group` says which rows
are positives of each other (default: every row its own group); `split` defaults to
"train". Media columns hold paths, resolved here against `data.root` or the manifest's
folder. Row numbers in messages are the line in the file for JSONL and CSV (the CSV
header is row 1, like a spreadsheet) and the 1-based record for Parquet.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contrastkit.errors import DataError

PATH_COLUMNS = ("image", "video", "sequence", "features")
MODALITY_COLUMNS = ("text", *PATH_COLUMNS, "label", "attributes")
EXTRA_TEXT_PREFIX = "text_"  # `text_code`, `text_summary`, ...: extra raw-text streams


@dataclass(frozen=True)
class Row:
    """One manifest row.

    Attributes:
        id: the manifest id (unique).
        group: match group; rows of one group are positives of each other.
        split: "train", "val", "test" or any other name.
        values: column -> raw value (the path string as written, the text, the label).
        line: 1-based row number in the manifest (see the module docstring).
        paths: media column -> resolved path (a tuple of paths for a multi-view video).
    """

    id: str
    group: str
    split: str
    values: dict[str, Any]
    line: int
    paths: dict[str, Path | tuple[Path, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedRow:
    """A row left out under `data.on_error: skip`, and why."""

    manifest: str
    line: int
    id: str
    column: str
    reason: str

    @property
    def row(self) -> int:
        return self.line


def row_error(manifest: str | Path, line: int, column: str, reason: str) -> DataError:
    """The one message format for a bad row: manifest, row, column, reason."""
    return DataError(f"{manifest}, row {line}, column {column!r}: {reason}")


def is_text_column(name: str) -> bool:
    """`text` and every `text_*` column carry raw text (a list[str] in the batch)."""
    return name == "text" or name.startswith(EXTRA_TEXT_PREFIX)


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (row number, record) pairs; a string record is a parse error message."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as f:
            for n, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as err:
                    yield n, f"invalid JSON ({err.msg} at char {err.pos})"
                    continue
                yield n, record if isinstance(record, dict) else "a JSONL row must be an object"
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            reader.fieldnames  # noqa: B018 - reads the header so line_num counts it
            start = reader.line_num
            for record in reader:
                yield start + 1, {k: _csv_value(k, v) for k, v in record.items() if k is not None}
                start = reader.line_num
    elif suffix in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{path}: reading Parquet manifests needs pyarrow: pip install contrastkit[data]"
            ) from None
        for n, record in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield n, record
    else:
        raise DataError(f"{path}: unknown manifest format {suffix!r}; use .jsonl, .csv or .parquet")


def _csv_value(column: str, value: str | None) -> Any:
    """CSV cells are strings: empty = missing; lists (attributes, multi-view video) as JSON."""
    if value is None or value == "":
        return None
    if column in ("attributes", "video") and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value  # reported by the column check below
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_value(column: str, value: Any) -> str | None:
    """Type check of one known column; returns the reason it is wrong, or None."""
    if is_text_column(column):
        if not isinstance(value, str):
            return f"text must be a string, got {type(value).__name__}"
        if not value.strip():
            return "text is empty"
    elif column == "video":
        views = value if isinstance(value, list) else [value]
        if not views or not all(isinstance(v, str) and v for v in views):
            return "video must be a path or a non-empty list of paths"
    elif column in PATH_COLUMNS:
        if not isinstance(value, str) or not value:
            return f"{column} must be a path string, got {value!r}"
    elif column == "label":
        if isinstance(value, bool) or not isinstance(value, int | str):
            return f"label must be a string or an integer, got {value!r}"
    elif column == "attributes":
        ok = isinstance(value, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in value
        )
        if not ok or not value:
            return f"attributes must be a non-empty list of finite numbers, got {value!r}"
    return None


def _resolve(base: Path, value: str | list[str]) -> Path | tuple[Path, ...]:
    if isinstance(value, list):
        return tuple(_resolve(base, v) for v in value)  # type: ignore[misc]
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def read_manifest(
    path: str | Path,
    *,
    root: str | Path | None = None,
    on_error: Literal["raise", "skip"] = "raise",
) -> tuple[list[Row], list[SkippedRow]]:
    """Parse a manifest into rows; structural checks only (no media is opened).

    Args:
        path: the .jsonl / .csv / .parquet manifest.
        root: base folder for relative media paths (default: the manifest's folder).
        on_error: "raise" on the first bad row, or "skip" it and report it.

    Returns:
        (rows, skipped) in file order.

    Raises:
        DataError: naming the manifest, row and column (missing `id`, duplicate id,
            wrong value type, empty text, invalid JSON).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    base = Path(root).expanduser() if root is not None else path.parent
    rows: list[Row] = []
    skipped: list[SkippedRow] = []
    first_line: dict[str, int] = {}

    def bad(line: int, row_id: str, column: str, reason: str) -> None:
        if on_error == "raise":
            raise row_error(path, line, column, reason)
        skipped.append(SkippedRow(str(path), line, row_id, column, reason))

    for line, record in _records(path):
        if isinstance(record, str):
            bad(line, "", "<row>", record)
            continue
        raw_id = record.get("id")
        if _missing(raw_id) or str(raw_id).strip() == "":
            bad(line, "", "id", "every row needs a non-empty `id`")
            continue
        row_id = str(raw_id)
        if row_id in first_line:
            bad(line, row_id, "id", f"duplicate id {row_id!r} (also row {first_line[row_id]})")
            continue
        values = {k: v for k, v in record.items() if not _missing(v)}
        problem = next(
            ((c, r) for c in values if (r := _check_value(c, values[c])) is not None), None
        )
        if problem is not None:
            bad(line, row_id, *problem)
            continue
        first_line[row_id] = line
        paths = {c: _resolve(base, values[c]) for c in PATH_COLUMNS if c in values}
        group = str(values.get("group", row_id))
        split = str(values.get("split", "train"))
        rows.append(Row(row_id, group, split, values, line, paths))
    if not rows and not skipped:
        raise DataError(f"manifest {path} has no rows")
    return rows, skipped


def label_names(rows: list[Row]) -> list[str]:
    """Sorted distinct labels: numerically when every label is an integer, else as text."""
    labels = {str(r.values["label"]).strip() for r in rows if "label" in r.values}
    if all(_is_int(x) for x in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def group_names(rows: list[Row]) -> list[str]:
    """Sorted distinct groups over the whole manifest (all splits share one mapping)."""
    return sorted({r.group for r in rows})
