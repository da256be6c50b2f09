"""Malformed manifest files: encodings, lone surrogates, CSV cells and headers, not-Parquet.

Each case once ended in a traceback (UnicodeDecodeError, UnicodeEncodeError, a pyarrow
error) or in silently wrong data (a truncated caption, an overwritten column)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contrastkit.data.manifest import read_manifest
from contrastkit.errors import DataError
from helpers.manifests import write_jsonl


def _skip(path: Path) -> tuple[list[str], list[tuple[int, str, str]]]:
    rows, skipped = read_manifest(path, on_error="skip")
    return [r.id for r in rows], [(s.line, s.column, s.reason) for s in skipped]


def test_jsonl_non_utf8_line_names_row_and_byte_offset(tmp_path: Path) -> None:
    good = b'{"id": "a", "text": "ok"}\n'
    path = tmp_path / "m.jsonl"
    path.write_bytes(good + b'{"id": "b", "text": "caf\xe9"}\n' + b'{"id": "c", "text": "x"}\n')
    offset = len(good) + len(b'{"id": "b", "text": "caf')  # the 0xe9 byte (latin-1 e-acute)
    with pytest.raises(
        DataError,
        match=rf"row 2, column '<row>': not UTF-8 text \(byte 0xe9 at byte offset {offset}\)",
    ):
        read_manifest(path)
    ids, skipped = _skip(path)
    assert ids == ["a", "c"]
    assert [(line, col) for line, col, _ in skipped] == [(2, "<row>")]


def test_jsonl_lone_surrogate_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": "bad \\ud800 text"}\n')
    with pytest.raises(DataError, match=r"row 2, column '<row>': .*not valid Unicode"):
        read_manifest(path)
    ids, skipped = _skip(path)
    assert ids == ["a"] and skipped[0][0] == 2


def test_jsonl_utf8_bom_and_huge_integer(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    huge = "9" * 5000  # beyond Python's int-parsing limit: a ValueError, not JSONDecodeError
    path.write_bytes(
        b"\xef\xbb\xbf" + b'{"id": "a", "text": "ok"}\n' + f'{{"id": {huge}}}\n'.encode()
    )
    ids, skipped = _skip(path)
    assert ids == ["a"]  # the BOM does not make row 1 invalid JSON
    assert skipped[0][:2] == (2, "<row>") and "invalid JSON" in skipped[0][2]


def test_csv_non_utf8_cell_names_row_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    head = b"id,text\n" + b"a,fine\n"
    path.write_bytes(head + b"b,na\xefve\n" + b"c,also fine\n")
    with pytest.raises(
        DataError,
        match=rf"row 3, column '<row>': not UTF-8 text \(byte 0xef at byte offset {len(head) + 4}\)",
    ):
        read_manifest(path)
    ids, skipped = _skip(path)
    assert ids == ["a", "c"] and [s[0] for s in skipped] == [3]


def test_csv_unquoted_comma_is_a_bad_row_not_a_truncated_caption(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('id,text\na,"a red, bus"\nb,a red, bus\n')
    with pytest.raises(
        DataError, match=r"row 3, column '<row>': 3 cells but the header has 2.*\"a red, bus\""
    ):
        read_manifest(path)
    rows, skipped = read_manifest(path, on_error="skip")
    assert [(r.id, r.values["text"]) for r in rows] == [("a", "a red, bus")]
    assert [s.line for s in skipped] == [3]


def test_csv_duplicate_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id,text,text\na,first,second\n")
    with pytest.raises(DataError, match=r"row 1 \(header\): duplicate column names \['text'\]"):
        read_manifest(path, on_error="skip")


@pytest.mark.parametrize(
    ("suffix", "sep", "hint"),
    [
        (".csv", ";", "';'-separated"),
        (".csv", "\t", "name it .tsv"),
        (".tsv", ",", "','-separated"),
    ],
)
def test_wrong_delimiter_gets_a_hint(tmp_path: Path, suffix: str, sep: str, hint: str) -> None:
    path = tmp_path / f"m{suffix}"
    path.write_text(f"id{sep}text\na{sep}hello\n")
    with pytest.raises(DataError, match="no `id` column") as err:
        read_manifest(path)
    assert hint in str(err.value)


def test_file_named_parquet_that_is_not_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    path = tmp_path / "m.parquet"
    path.write_text('{"id": "a"}\n')
    with pytest.raises(DataError, match=r"m.parquet is not a readable Parquet file"):
        read_manifest(path, on_error="skip")


def test_parquet_lone_surrogate_cannot_sneak_in(tmp_path: Path) -> None:
    """Arrow stores UTF-8, so a surrogate cannot be written; the reader's check is for
    JSONL. Here: a well-formed Parquet manifest with non-ASCII text reads unchanged."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "a", "text": "caf\u00e9 \u2028 ok"}]), path)
    rows, _ = read_manifest(path)
    assert rows[0].values["text"] == "caf\u00e9 \u2028 ok"


def test_csv_line_separator_inside_a_cell_stays_in_the_cell(tmp_path: Path) -> None:
    """U+2028 and form feeds are not row ends for CSV (str.splitlines would split there)."""
    path = tmp_path / "m.csv"
    path.write_text("id,text\na,one\u2028two\x0cthree\nb,next\n", encoding="utf-8")
    rows, skipped = read_manifest(path)
    assert skipped == [] and [r.values["text"] for r in rows] == ["one\u2028two\x0cthree", "next"]
    assert [r.line for r in rows] == [2, 3]


def test_group_and_split_values_are_type_checked(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "m.jsonl",
        [{"id": "a", "group": [1]}, {"id": "b", "split": 3}, {"id": "c", "group": True}],
    )
    _, skipped = _skip(path)
    assert [(line, col) for line, col, _ in skipped] == [(1, "group"), (2, "split"), (3, "group")]


def test_jsonl_reader_accepts_json_dumps_output(tmp_path: Path) -> None:
    """The byte-level reader gives the same rows as json.loads line by line."""
    records = [
        {"id": f"r{i}", "text": f"t\u00e9xt {i} \U0001f600", "group": i % 2} for i in range(4)
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n")
    rows, _ = read_manifest(path)
    assert [r.values["text"] for r in rows] == [r["text"] for r in records]


def test_csv_header_names_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("id, text ,split\na,hello,val\n")
    (row,), _ = read_manifest(path)
    assert (row.id, row.values["text"], row.split) == ("a", "hello", "val")
