"""Raw manifest records: JSONL, CSV/TSV and Parquet files -> (row number, dict) pairs.

This is the byte/encoding layer below `manifest.py`. Every way a file can be malformed
ends here as either a per-row problem (a string record: the row is bad and may be skipped
under `on_error: skip`) or a `DataError` for the whole file (unreadable header, not
Parquet at all). Nothing else escapes: a manifest that is not UTF-8, holds a lone
surrogate (`"\\ud800"` in JSON), a number too long to parse, or a CSV row with more cells
than the header never becomes a traceback or a silently truncated value.

Row numbers are the line in the file for JSONL and CSV (the CSV header is row 1, like a
spreadsheet) and the 1-based record for Parquet. Byte offsets in messages are 0-based
from the start of the file, as `xxd` / `hexdump` show them.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from contrastkit.errors import DataError

Record = dict[str, Any] | str  # a parsed row, or the reason it could not be parsed
UTF8_BOM = b"\xef\xbb\xbf"
# Delimiters a spreadsheet may have used instead of the expected one; a header that holds
# one of these but no expected delimiter gets a hint instead of "no `id` column".
OTHER_DELIMITERS = (";", "\t", "|", ",")


def iter_records(path: Path) -> Iterator[tuple[int, Record]]:
    """Yield (row number, record) pairs; a string record is the reason the row is bad.

    Raises:
        DataError: the file as a whole is unreadable (unknown suffix, bad CSV header,
            not Parquet, missing pyarrow).
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl(path)
    elif suffix in (".csv", ".tsv"):
        yield from _csv(path, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".parquet", ".pq"):
        yield from _parquet(path)
    else:
        raise DataError(f"{path}: unknown manifest format {suffix!r}; use .jsonl, .csv or .parquet")


def lone_surrogate(value: Any) -> str | None:
    """The first string in `value` (nested lists/dicts, keys too) that is not valid
    Unicode (a lone UTF-16 surrogate such as JSON's "\\ud800"), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    return next((bad for v in items if (bad := lone_surrogate(v)) is not None), None)


def _not_utf8(err: UnicodeDecodeError, offset: int) -> str:
    byte = err.object[err.start : err.start + 1].hex()
    return f"not UTF-8 text (byte 0x{byte} at byte offset {offset + err.start}); save the file as UTF-8"


def _surrogate_reason(text: str) -> str:
    return f"{text[:40]!r} is not valid Unicode (a lone surrogate such as \\ud800)"


def _jsonl(path: Path) -> Iterator[tuple[int, Record]]:
    offset = 0  # bytes before the current line
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            if n == 1 and raw.startswith(UTF8_BOM):
                raw, start = raw[len(UTF8_BOM) :], start + len(UTF8_BOM)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield n, _not_utf8(err, start)
                continue
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                yield n, f"invalid JSON ({err.msg} at char {err.pos})"
                continue
            except (ValueError, RecursionError) as err:  # over-long integers, deep nesting
                yield n, f"invalid JSON ({type(err).__name__}: {str(err)[:120]})"
                continue
            if not isinstance(record, dict):
                yield n, "a JSONL row must be an object"
            elif (bad := lone_surrogate(record)) is not None:
                yield n, _surrogate_reason(bad)
            else:
                yield n, record


def _line_starts(text: str, bom: int) -> list[int]:
    """Byte offset of the start of every physical line (index 0 = line 1), with lines
    split as the csv module counts them (\\n, \\r\\n or a bare \\r)."""
    starts = [bom]
    for line in io.StringIO(text, newline=""):
        starts.append(starts[-1] + len(line.encode("utf-8", errors="surrogateescape")))
    return starts


def _decode_problem(data: bytes, starts: list[int], first: int, last: int) -> str:
    """Why lines first..last (1-based) hold undecodable bytes, with the byte offset."""
    lo = starts[first - 1] if first - 1 < len(starts) else len(data)
    hi = starts[last] if last < len(starts) else len(data)
    try:
        data[lo:hi].decode("utf-8")
    except UnicodeDecodeError as err:
        return _not_utf8(err, lo)
    return "not UTF-8 text; save the file as UTF-8"


def _csv(path: Path, delimiter: str) -> Iterator[tuple[int, Record]]:
    data = path.read_bytes()
    bom = len(UTF8_BOM) if data.startswith(UTF8_BOM) else 0
    # Undecodable bytes become lone surrogates (U+DC80..U+DCFF), found per row below.
    text = data[bom:].decode("utf-8", errors="surrogateescape")
    starts = _line_starts(text, bom)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise DataError(f"{path}, row 1 (header): unreadable CSV: {err}") from None
    if header is None:
        raise DataError(f"manifest {path} has no rows")
    if lone_surrogate(header) is not None:
        raise DataError(f"{path}, row 1 (header): {_decode_problem(data, starts, 1, 1)}")
    _check_header(path, header, delimiter)
    header = [h.strip() for h in header]  # " text" from "id, text" is the column `text`
    first = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(f"{path}, row {first}: unreadable CSV: {err}") from None
        line, first = first, reader.line_num + 1
        if not any(c.strip() for c in cells):
            continue  # a blank line
        if lone_surrogate(cells) is not None:
            yield line, _decode_problem(data, starts, line, reader.line_num)
        elif len(cells) > len(header):
            extra = delimiter.join(cells[len(header) - 1 :])
            yield (
                line,
                (
                    f"{len(cells)} cells but the header has {len(header)}; an unquoted "
                    f'{delimiter!r} inside a value? quote it: "{extra[:60]}"'
                ),
            )
        else:
            yield line, {h: _csv_value(h, c) for h, c in zip(header, cells, strict=False)}


def _check_header(path: Path, header: list[str], delimiter: str) -> None:
    names = [h.strip() for h in header]
    dup = sorted(h for h, k in Counter(names).items() if k > 1)
    if dup:
        raise DataError(
            f"{path}, row 1 (header): duplicate column names {dup}; every column needs its "
            "own name (the later one would silently replace the earlier)"
        )
    if "id" in names:
        return
    seen = [d for d in OTHER_DELIMITERS if d != delimiter and any(d in h for h in names)]
    hint = (
        f"; the header looks {seen[0]!r}-separated but this file is read with {delimiter!r}: "
        f"save it {'tab' if delimiter == chr(9) else 'comma'}-separated"
        + (" (or name it .tsv)" if seen[0] == "\t" else "")
        if seen and len(names) <= 2
        else ""
    )
    raise DataError(f"{path}, row 1 (header): no `id` column; columns: {names}{hint}")


def _csv_value(column: str, value: str) -> Any:
    """CSV cells are strings: empty = missing; lists (attributes, multi-view video) as JSON."""
    if value == "":
        return None
    if column in ("attributes", "video") and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value  # reported by the column check in manifest.py
    return value


def _parquet(path: Path) -> Iterator[tuple[int, Record]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet manifests needs pyarrow: pip install contrastkit[data]"
        ) from None
    try:
        records = pq.read_table(path).to_pylist()
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise DataError(f"{path} is not a readable Parquet file: {str(err)[:200]}") from None
    for n, record in enumerate(records, start=1):
        bad = lone_surrogate(record)
        yield n, record if bad is None else _surrogate_reason(bad)
