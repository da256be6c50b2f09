from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.config import DataConfig
from contrastkit.data import build_datasets
from contrastkit.errors import DataError
from helpers.manifests import rich_rows, write_jsonl


def config(path: Path, **kw) -> DataConfig:
    return DataConfig(manifest=str(path), **kw)


BAD_ROWS = [  # (changes to a good row, column named in the error, reason)
    ({"image": "missing.png"}, "image", "file not found"),
    ({"image": "broken.png"}, "image", "cannot decode image"),
    ({"sequence": "seq2d.npy"}, "sequence", "T x J x C"),
    ({"text": ""}, "text", "text is empty"),
    ({"id": "r0"}, "id", "duplicate id 'r0' (also row 1)"),
    ({"features": "seq3.npy"}, "features", "F or N x F"),
    ({"attributes": [1, 2, 3]}, "attributes", "size 3 but row 1 has 2"),
    ({"video": None}, "video", "value is missing, but other rows have this column"),
]


def bad_row(i: int, changes: dict) -> dict:
    return {**rich_rows()[1], "id": f"bad{i}", **changes}


@pytest.mark.parametrize(("changes", "column", "reason"), BAD_ROWS)
def test_raise_names_manifest_row_and_column(
    media: Path, changes: dict, column: str, reason: str
) -> None:
    path = write_jsonl(media / "m.jsonl", [rich_rows()[0], bad_row(0, changes)])
    with pytest.raises(DataError) as err:
        build_datasets(config(path))
    assert f"{path}, row 2, column '{column}'" in str(err.value)
    assert reason in str(err.value)


def test_skip_keeps_good_rows_and_reports_every_bad_one(media: Path) -> None:
    bad = [bad_row(i, changes) for i, (changes, _, _) in enumerate(BAD_ROWS)]
    path = write_jsonl(media / "m.jsonl", [rich_rows()[0], *bad, rich_rows()[1]])
    bundle = build_datasets(config(path, on_error="skip"))
    assert [r.id for r in bundle.splits["train"].rows] == ["r0", "r1"]
    expected = [(i + 2, column) for i, (_, column, _) in enumerate(BAD_ROWS)]
    assert [(s.line, s.column) for s in bundle.skipped] == expected
    assert all(s.manifest == str(path) and s.reason for s in bundle.skipped)


def test_samples_and_input_specs(media: Path) -> None:
    path = write_jsonl(media / "m.jsonl", rich_rows())
    bundle = build_datasets(config(path, image={"size": 8}, video={"frames": 2, "size": 4}))
    train = bundle.splits["train"]
    sample = train[1]
    assert sample["id"] == "r1" and sample["text"] == "second" and sample["label"] == 1
    assert sample["image"].shape == (1, 8, 8) and sample["video"].shape == (2, 1, 4, 4)
    assert sample["sequence"].shape == (5, 4, 2) and sample["features"].shape == (3, 6)
    assert torch.equal(sample["attributes"], torch.tensor([1.0, 2.0]))
    assert bundle.splits["val"][0]["label"] == -1  # no label in this row
    assert train.input_specs() == {
        "attributes": (2,), "features": (3, 6), "image": (1, 8, 8), "sequence": (64, 4, 2),
        "text": (), "video": (2, 1, 4, 4),
    }  # fmt: skip
    assert train.texts() == ["first", "second"]
    assert bundle.label_names == ["cat", "dog"]
    assert bundle.columns == {
        "text",
        "image",
        "video",
        "sequence",
        "features",
        "label",
        "attributes",
    }


def test_read_time_failure_in_skip_mode_substitutes_next_row(media: Path) -> None:
    np.save(media / "late.npy", np.zeros((4, 4), np.float32))
    rows = [{"id": "a", "image": "late.npy"}, {"id": "b", "image": "b.npy"}]
    path = write_jsonl(media / "m.jsonl", rows)
    dataset = build_datasets(config(path, on_error="skip")).splits["train"]
    (media / "late.npy").write_bytes(b"corrupted after validation")
    with pytest.warns(UserWarning, match="row 1, column 'image'"):
        sample = dataset[0]
    assert sample["id"] == "b" and sample["index"] == 1
    strict = build_datasets(config(path.with_name("m.jsonl"), on_error="skip"))
    assert [s.id for s in strict.skipped] == ["a"]  # rebuilt: now caught up front
