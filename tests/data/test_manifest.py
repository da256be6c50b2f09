from __future__ import annotations

from pathlib import Path

import pytest

from contrastkit.data.manifest import group_names, label_names, read_manifest
from contrastkit.errors import DataError
from helpers.manifests import WRITERS, rich_rows, write_jsonl


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_gives_the_same_rows(tmp_path: Path, fmt: str) -> None:
    path = WRITERS[fmt](tmp_path / f"m.{fmt}", rich_rows())
    rows, skipped = read_manifest(path)
    assert skipped == []
    assert [r.id for r in rows] == ["r0", "r1", "r2"]
    assert [r.group for r in rows] == ["g0", "g0", "r2"]  # default group = id
    assert [r.split for r in rows] == ["train", "train", "val"]
    assert rows[0].values["note"] == "ignored"  # unknown columns are kept
    assert rows[1].paths["image"] == tmp_path / "b.npy"  # relative to the manifest's folder
    assert [float(x) for x in rows[1].values["attributes"]] == [1.0, 2.0]
    assert "label" not in rows[2].values
    # Row numbers: file lines for JSONL, spreadsheet rows (header = 1) for CSV, records for Parquet.
    expected_lines = {"jsonl": [1, 2, 3], "csv": [2, 3, 4], "parquet": [1, 2, 3]}[fmt]
    assert [r.line for r in rows] == expected_lines


def test_root_overrides_manifest_folder_and_multiview_list(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": "a", "video": ["v0.npy", "/abs/v1.npy"]}])
    rows, _ = read_manifest(path, root=tmp_path / "media")
    assert rows[0].paths["video"] == (tmp_path / "media" / "v0.npy", Path("/abs/v1.npy"))


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ({"text": "no id"}, "id", "needs a non-empty `id`"),
        ({"id": "x", "text": "   "}, "text", "text is empty"),
        ({"id": "x", "attributes": [1, "a"]}, "attributes", "finite numbers"),
        ({"id": "x", "label": 1.5}, "label", "string or an integer"),
        ({"id": "x", "image": 3}, "image", "path string"),
    ],
)
def test_bad_value_names_manifest_row_and_column(
    tmp_path: Path, row: dict, column: str, reason: str
) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": "ok", "text": "fine"}, row])
    with pytest.raises(DataError) as err:
        read_manifest(path)
    message = str(err.value)
    assert str(path) in message and "row 2" in message and f"'{column}'" in message
    assert reason in message


def test_duplicate_id_names_both_rows(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"id": "a"}, {"id": "b"}, {"id": "a"}])
    with pytest.raises(DataError, match=r"row 3, column 'id': duplicate id 'a' \(also row 1\)"):
        read_manifest(path)


def test_skip_mode_reports_instead_of_raising(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"id": "a", "text": "t"}\n{not json\n{"id": "a", "text": "u"}\n{"id": "b", "text": ""}\n'
    )
    rows, skipped = read_manifest(path, on_error="skip")
    assert [r.id for r in rows] == ["a"]
    assert [(s.line, s.column) for s in skipped] == [(2, "<row>"), (3, "id"), (4, "text")]
    assert skipped[1].id == "a" and skipped[1].manifest == str(path)


def test_label_names_sort_numerically_when_all_integers(tmp_path: Path) -> None:
    rows, _ = read_manifest(
        write_jsonl(
            tmp_path / "m.jsonl", [{"id": str(i), "label": v} for i, v in enumerate([10, "2", 1])]
        )
    )
    assert label_names(rows) == ["1", "2", "10"]
    rows, _ = read_manifest(
        write_jsonl(
            tmp_path / "n.jsonl", [{"id": str(i), "label": v} for i, v in enumerate(["b", "a", 3])]
        )
    )
    assert label_names(rows) == ["3", "a", "b"]
    assert group_names(rows) == ["0", "1", "2"]


def test_labels_written_two_ways_are_one_class(tmp_path: Path) -> None:
    """As for groups: `1`, `1.0`, `"1"`, `"1.0"` and `" 1 "` are the class "1" (pandas
    writes an integer column with a gap as floats); a fractional float is refused."""
    spellings = [1, 1.0, "1", "1.0", " 1 ", "+1", 2, "cat"]
    rows, _ = read_manifest(
        write_jsonl(
            tmp_path / "m.jsonl", [{"id": str(i), "label": v} for i, v in enumerate(spellings)]
        )
    )
    assert [r.values["label"] for r in rows] == ["1"] * 6 + ["2", "cat"]
    assert label_names(rows) == ["1", "2", "cat"]
    for bad, reason in [(2.5, "string or an integer"), ("  ", "label is empty")]:
        path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "label": bad}])
        with pytest.raises(DataError, match=f"row 1.*label.*{reason}"):
            read_manifest(path)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "m.txt").write_text("id\n")
    with pytest.raises(DataError, match="unknown manifest format"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "nope.jsonl")
