"""Manifest files (JSONL, CSV, Parquet) -> a list of `Row`s.

A manifest has one row per sample. `id` is required and unique; `group` says which rows
are positives of each other (default: every row its own group); `split` defaults to
"train". Media columns hold paths, resolved here against `data.root` or the manifest's
folder. Row numbers in messages are the line in the file for JSONL and CSV (the CSV
header is row 1, like a spreadsheet) and the 1-based record for Parquet.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from contrastkit.data.records import iter_records
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
        """The manifest row (the `line` field), as error messages name it."""
        return self.line


def row_error(manifest: str | Path, line: int, column: str, reason: str) -> DataError:
    """The one message format for a bad row: manifest, row, column, reason."""
    return DataError(f"{manifest}, row {line}, column {column!r}: {reason}")


def is_text_column(name: str) -> bool:
    """`text` and every `text_*` column carry raw text (a list[str] in the batch)."""
    return name == "text" or name.startswith(EXTRA_TEXT_PREFIX)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# An integer, or one written as a float as spreadsheets and pandas write integer columns
# that had a missing value: "1.0", "12.", "+3.00". Leading zeros are kept ("01").
_INTEGRAL_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?")


def canonical_group(value: Any) -> str:
    """The group name of a `group` value, so `1`, `1.0`, `"1"`, `"1.0"` and `" 1"` are one group.

    Labels are read the same way (`canonical_label`), so they are one class.

    Numbers that are whole become their integer text; strings are stripped of surrounding
    whitespace and of a `.0` suffix on an integer. Other spellings (`"01"`, `"1e0"`) are
    kept as written: the data doctor flags them (`group_format_clashes`).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if _INTEGRAL_TEXT.fullmatch(text):
        return text.split(".")[0].removeprefix("+")
    return text


def canonical_label(value: Any) -> str:
    """The class name of a `label` value: `1`, `1.0`, `"1"`, `"1.0"` and `" 1"` are one
    class (a spreadsheet or pandas writes an integer column with a gap as floats)."""
    return canonical_group(value)


def canonical_split(value: Any) -> str:
    """Split names are case-insensitive: `Test`, ` test` and `TEST` are the split `test`."""
    return str(value).strip().lower()


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
        if any("\x00" in v for v in views):
            return "video path contains a NUL byte"
    elif column in PATH_COLUMNS:
        if not isinstance(value, str) or not value:
            return f"{column} must be a path string, got {value!r}"
        if "\x00" in value:
            return f"{column} path contains a NUL byte"
    elif column == "label":
        whole = isinstance(value, float) and value.is_integer()
        if isinstance(value, bool) or not (isinstance(value, int | str) or whole):
            return f"label must be a string or an integer, got {value!r}"
        if not canonical_label(value):
            return "label is empty (leave the value out for a row without a class)"
    elif column == "attributes":
        ok = isinstance(value, list) and all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
            for x in value
        )
        if not ok or not value:
            return f"attributes must be a non-empty list of finite numbers, got {value!r}"
    elif column == "group":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return f"group must be a string or a number, got {value!r}"
    elif column == "split" and (not isinstance(value, str) or not value.strip()):
        return f"split must be a non-empty string, got {value!r}"
    return None


def _resolve(base: Path, value: str | list[str], confine: Path | None) -> Path | tuple[Path, ...]:
    """A media path: `~` expanded, relative paths joined to `base`; with `confine` (the
    resolved data root) symlinks and `..` are resolved and the result must lie inside it.

    Raises:
        ValueError: the path leaves the root (`confine`), or `~user` names no user.
    """
    if isinstance(value, list):
        return tuple(_resolve(base, v, confine) for v in value)  # type: ignore[misc]
    try:
        p = Path(value).expanduser()
    except RuntimeError as err:  # "~nosuchuser/..."
        raise ValueError(f"cannot expand {value!r}: {err}") from None
    p = p if p.is_absolute() else base / p
    if confine is None:
        return p
    real = p.resolve()
    if not real.is_relative_to(confine):
        raise ValueError(
            f"path {value!r} resolves to {real}, outside the data root {confine} "
            "(data.allow_outside_root: false)"
        )
    return real


def read_manifest(
    path: str | Path,
    *,
    root: str | Path | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    allow_outside_root: bool = True,
) -> tuple[list[Row], list[SkippedRow]]:
    """Parse a manifest into rows; structural checks only (no media is opened).

    Args:
        path: the .jsonl / .csv / .parquet manifest.
        root: base folder for relative media paths (default: the manifest's folder).
        on_error: "raise" on the first bad row, or "skip" it and report it.
        allow_outside_root: False confines every media path (after `~`, `..` and
            symlinks are resolved) to the root; a path outside it is a bad row.

    Returns:
        (rows, skipped) in file order.

    Raises:
        DataError: naming the manifest, row and column (missing `id`, duplicate id,
            wrong value type, empty text, invalid JSON, bytes that are not UTF-8).
    """
    path = Path(path)
    try:
        found = path.is_file()
    except OSError as err:  # a name too long for the filesystem
        raise DataError(f"manifest {str(path)[:200]} cannot be opened: {err.strerror}") from None
    if not found:
        raise DataError(f"manifest {path} does not exist")
    try:
        base = Path(root).expanduser() if root is not None else path.parent
        confine = None if allow_outside_root else base.resolve()
    except (RuntimeError, OSError, ValueError) as err:  # ~nosuchuser, a NUL byte
        raise DataError(f"data.root {str(root)[:200]!r} is not a usable folder: {err}") from None
    rows: list[Row] = []
    skipped: list[SkippedRow] = []
    first_line: dict[str, int] = {}

    def bad(line: int, row_id: str, column: str, reason: str) -> None:
        if on_error == "raise":
            raise row_error(path, line, column, reason)
        skipped.append(SkippedRow(str(path), line, row_id, column, reason))

    for line, record in iter_records(path):
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
        if "label" in values:  # one spelling per class from here on (datasets, shards)
            values["label"] = canonical_label(values["label"])
        paths = {}
        for column in (c for c in PATH_COLUMNS if c in values):
            try:
                paths[column] = _resolve(base, values[column], confine)
            except ValueError as err:
                problem = (column, str(err))
                break
        if problem is not None:
            bad(line, row_id, *problem)
            continue
        first_line[row_id] = line
        group = canonical_group(values.get("group", "")) or row_id
        split = canonical_split(values.get("split", "train"))
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


def group_format_clashes(rows: list[Row]) -> list[list[str]]:
    """Groups that are distinct names but the same number (`"01"` and `"1"`, `"1e0"` and
    `"1"`): probably one group written two ways, which turns positives into negatives.
    `canonical_group` already merges the common cases; these are the ones it leaves."""
    by_number: dict[float, set[str]] = {}
    for name in {r.group for r in rows}:
        try:
            number = float(name)
        except ValueError:
            continue
        if math.isfinite(number):
            by_number.setdefault(number, set()).add(name)
    return sorted(sorted(names) for names in by_number.values() if len(names) > 1)
