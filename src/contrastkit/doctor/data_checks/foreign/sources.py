"""Datasets written for other tools -> `Source` rows: media (a path or bytes), text, split.

Formats:
- open_clip CSV / TSV: one row per (image path, caption), open_clip's default columns
  `filepath` and `title`; rows are numbered like a spreadsheet (header = row 1);
- COCO captions JSON: `images` (id, file_name) and `annotations` (image_id, caption), one
  row per annotation, numbered from 1 in `annotations`;
- Parquet: one row per record (numbered from 1); the image column holds bytes, a path, or
  the `{"bytes", "path"}` struct that Hugging Face `datasets` writes;
- a `datasets.save_to_disk` folder: a `Dataset` (one split) or a `DatasetDict` (its splits).
Text pairs (sentence-transformers' `anchor` / `positive`) are read with `Columns.pair`: the
pair column is a second text, and the rows hold no image.
Every problem with the input raises a `DataError` naming the file, row and column.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastkit.errors import DataError

# Column names tried when none is given (open_clip's CSV defaults first).
IMAGE_COLUMNS = ("filepath", "image", "img", "jpg", "png", "image_path", "file_name")
TEXT_COLUMNS = ("title", "caption", "text", "sentence", "txt")
DEFAULT_SPLIT = "train"


@dataclass(frozen=True)
class Source:
    """One row of a foreign dataset.

    Attributes:
        line: the row number the messages use (see the module docstring).
        split: the split the row belongs to.
        media: the media path as written, or None when the row holds bytes.
        data: the media bytes (Parquet, datasets), or None.
        text: the caption.
        ref: the row's own id where the format has one (COCO annotation id), else "".
        pair: the second text of a text pair (`Columns.pair`), else None.
    """

    line: int
    split: str
    media: str | None
    data: bytes | None
    text: str | None
    ref: str = ""
    pair: str | None = None


@dataclass(frozen=True)
class Columns:
    """Which columns to read (None: the first of the known names that exists; "" for
    the image: none). `pair` names a second text column (text pairs: no image)."""

    image: str | None = None
    text: str | None = None
    split: str | None = "split"
    sep: str | None = None
    pair: str | None = None


def _pick(
    file: Path, names: list[str], given: str | None, known: tuple[str, ...], what: str
) -> str | None:
    if given is not None:
        if given == "":
            return None  # asked for no such column
        if given not in names:
            raise DataError(f"{file}: no column {given!r} for the {what}; columns: {names}")
        return given
    found = next((n for n in known if n in names), None)
    if found is None:
        raise DataError(
            f"{file}: no {what} column among {list(known)}; columns: {names}; "
            f"name it with --{what}-col"
        )
    return found


def _media(file: Path, line: int, column: str, value: Any) -> tuple[str | None, bytes | None]:
    """A cell of the image column -> (path, bytes)."""
    if isinstance(value, dict):  # datasets' Image struct: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return None, bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, bytes | bytearray):
        return None, bytes(value)
    if isinstance(value, str) and value.strip():
        return value.strip(), None
    raise DataError(f"{file}, row {line}, column {column!r}: no image (got {str(value)[:60]!r})")


def _text(file: Path, line: int, column: str | None, value: Any) -> str | None:
    if column is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{file}, row {line}, column {column!r}: empty or missing text")
    return value


def _records(
    file: Path,
    records: list[tuple[int, dict[str, Any]]],
    names: list[str],
    cols: Columns,
    split: str,
) -> list[Source]:
    pair = _pick(file, names, cols.pair, (), "pair") if cols.pair else None
    no_image = cols.image is None and pair is not None  # a text pair holds no image
    image = None if no_image else _pick(file, names, cols.image, IMAGE_COLUMNS, "image")
    text = _pick(file, names, cols.text, TEXT_COLUMNS, "text")
    split_col = cols.split if cols.split in names else None
    out = []
    for line, rec in records:
        media, data = (None, None) if image is None else _media(file, line, image, rec.get(image))
        name = str(rec[split_col]).strip().lower() if split_col and rec.get(split_col) else split
        caption = _text(file, line, text, rec.get(text or ""))
        second = _text(file, line, pair, rec.get(pair or ""))
        out.append(Source(line, name, media, data, caption, pair=second))
    return out


def read_csv(file: Path, cols: Columns, split: str) -> list[Source]:
    """open_clip's CSV / TSV (`--sep`, default tab for .tsv, else comma)."""
    sep = cols.sep or ("\t" if file.suffix.lower() == ".tsv" else ",")
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{file}: not UTF-8 text (byte offset {err.start}); save it as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = [h.strip() for h in next(reader, [])]
        rows = []
        first = reader.line_num + 1
        for cells in reader:
            line, first = first, reader.line_num + 1
            if any(c.strip() for c in cells):
                rows.append((line, dict(zip(header, cells, strict=False))))
    except csv.Error as err:
        raise DataError(f"{file}, row {reader.line_num}: unreadable CSV: {err}") from None
    if not header or not rows:
        raise DataError(f"{file} has no rows (separator {sep!r}; set it with --sep)")
    return _records(file, rows, header, cols, split)


def read_coco(file: Path, split: str) -> list[Source]:
    """COCO captions: one row per annotation, its image's `file_name` as the media path."""
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{file} is not a readable JSON file: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise DataError(f"{file}: not COCO captions JSON (no `annotations` list)")
    images = {}
    for n, img in enumerate(doc.get("images") or [], start=1):
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise DataError(f"{file}, images[{n}]: needs `id` and `file_name`")
        images[img["id"]] = img["file_name"]
    out = []
    for n, ann in enumerate(doc["annotations"], start=1):
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            got = ann.get("image_id") if isinstance(ann, dict) else ann
            raise DataError(
                f"{file}, row {n}, column 'image_id': annotation {n} names image {got!r}, "
                "which `images` does not list"
            )
        caption = _text(file, n, "caption", ann.get("caption"))
        out.append(
            Source(n, split, str(images[ann["image_id"]]), None, caption, str(ann.get("id", n)))
        )
    return out


def read_parquet(file: Path, cols: Columns, split: str) -> list[Source]:
    """A Parquet file (pyarrow); one row per record."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise DataError(f"{file} is not a readable Parquet file: {str(err)[:200]}") from None
    records = list(enumerate(table.to_pylist(), start=1))
    return _records(file, records, list(table.column_names), cols, split)


def read_hf_folder(folder: Path, cols: Columns) -> list[Source]:
    """A `datasets.save_to_disk` folder; image columns are read undecoded (bytes / path)."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{folder}: reading a datasets folder needs `datasets` (pip install datasets)"
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (OSError, ValueError, FileNotFoundError) as err:
        raise DataError(f"{folder} is not a datasets.save_to_disk folder: {err}") from None
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {DEFAULT_SPLIT: loaded}
    out: list[Source] = []
    for split, ds in parts.items():
        for name, feature in ds.features.items():
            if isinstance(feature, datasets.Image):
                ds = ds.cast_column(name, datasets.Image(decode=False))
        records = list(enumerate(ds.to_list(), start=1))
        out += _records(folder / split, records, list(ds.column_names), cols, split.lower())
    return out


def read_source(path: Path, cols: Columns, split: str = DEFAULT_SPLIT) -> list[Source]:
    """Read any supported format (chosen by the suffix; a folder is a datasets folder)."""
    if not path.exists():
        raise DataError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if path.is_dir():
        return read_hf_folder(path, cols)
    if suffix in (".csv", ".tsv", ".txt"):
        return read_csv(path, cols, split)
    if suffix == ".json":
        return read_coco(path, split)
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, cols, split)
    manifest = (
        " (a contrastkit .jsonl manifest is checked through its config: doctor data CONFIG.yaml)"
        if suffix in (".jsonl", ".ndjson")
        else ""
    )
    raise DataError(
        f"{path}: unknown dataset format {suffix!r}; use a .csv/.tsv (open_clip), a COCO "
        f"captions .json, a .parquet file or a datasets.save_to_disk folder{manifest}"
    )
