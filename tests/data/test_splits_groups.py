"""Splits, group ids and media paths: the quiet ways a manifest trains on the wrong thing.

A missing or misspelt train split once gave `KeyError: 'train'`; `split: Test` became a
split nobody evaluated; group ids `1` and `1.0` became two groups (positives turned into
negatives); and any manifest could read any file on the machine."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from contrastkit.app.cli import main
from contrastkit.config import DataConfig
from contrastkit.data import build_datasets, read_manifest
from contrastkit.errors import DataError
from helpers.manifests import write_csv, write_jsonl

TOWERS = {
    "image": {"streams": {"image": {"type": "cnn"}}},
    "text": {"streams": {"text": {"type": "builtin_text"}}},
}


def _config(tmp_path: Path, manifest: Path, **data: object) -> Path:
    cfg = {
        "data": {"manifest": str(manifest), "batch_size": 2, **data},
        "model": {"towers": TOWERS, "embed_dim": 8},
        "train": {"epochs": 1, "device": "cpu"},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _rows(splits: list[str]) -> list[dict]:
    return [{"id": f"r{i}", "split": s, "text": f"row {i}"} for i, s in enumerate(splits)]


def test_train_with_a_misspelt_train_split_lists_the_splits(tmp_path: Path, capsys) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", _rows(["train", "train", "val"]))
    config = _config(tmp_path, manifest, train_split="trian")
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    err = " ".join(capsys.readouterr().err.split())  # the CLI wraps long lines
    assert "no rows in the train split 'trian'" in err
    assert "splits: {'train': 2, 'val': 1}" in err and "Traceback" not in err


def test_manifest_without_train_rows(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", _rows(["val", "test"]))
    with pytest.raises(
        DataError, match=r"no rows in the train split 'train'.*\{'test': 1, 'val': 1\}"
    ):
        build_datasets(DataConfig(manifest=str(manifest)))
    bundle = build_datasets(DataConfig(manifest=str(manifest)), require_train=False)
    assert sorted(bundle.splits) == ["test", "val"]


def test_skip_removing_every_train_row_says_so(tmp_path: Path) -> None:
    rows = [{"id": f"t{i}", "text": "x", "image": f"missing{i}.png"} for i in range(3)]
    rows.append({"id": "v", "split": "val", "text": "x", "image": "missing.png"})
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError) as err:
        build_datasets(DataConfig(manifest=str(manifest), on_error="skip"))
    message = str(err.value)
    assert "all 3 rows of the train split 'train' were skipped under data.on_error: skip" in message
    assert "row 1, column 'image': file not found" in message
    assert "column missing" not in message


def test_split_names_are_case_insensitive(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", _rows(["Train", "train ", "TEST", "Val"]))
    cfg = DataConfig(manifest=str(manifest), train_split="TRAIN")
    bundle = build_datasets(cfg)
    assert cfg.train_split == "train"
    assert {k: len(v) for k, v in bundle.splits.items()} == {"train": 2, "test": 1, "val": 1}


def test_eval_split_without_rows_warns_with_the_existing_splits(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", _rows(["train", "train", "val"]))
    with pytest.warns(
        UserWarning, match=r"eval.splits names 'test'.*splits: \{'train': 2, 'val': 1\}"
    ):
        build_datasets(DataConfig(manifest=str(manifest)), eval_splits=["val", "test"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_datasets(DataConfig(manifest=str(manifest)), eval_splits=["val"])


@pytest.mark.parametrize("writer", [write_jsonl, write_csv], ids=["jsonl", "csv"])
def test_numeric_group_ids_written_differently_are_one_group(tmp_path: Path, writer) -> None:
    groups = [1, 1.0, " 1", "1.0", "+1", 2, "2.00"]
    rows = [{"id": f"r{i}", "group": g, "text": f"t{i}"} for i, g in enumerate(groups)]
    path = writer(tmp_path / f"m.{'jsonl' if writer is write_jsonl else 'csv'}", rows)
    bundle = build_datasets(DataConfig(manifest=str(path)))
    assert bundle.group_names == ["1", "2"]
    assert bundle.splits["train"].group_ids.tolist() == [0, 0, 0, 0, 0, 1, 1]


def test_doctor_data_flags_group_ids_that_differ_only_in_format(tmp_path: Path, capsys) -> None:
    groups = ["01", "1", "1", "abc", "7", "7e0"]
    rows = [{"id": f"r{i}", "group": g, "text": f"t{i}"} for i, g in enumerate(groups)]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    rows_read, _ = read_manifest(manifest)
    assert sorted({r.group for r in rows_read}) == ["01", "1", "7", "7e0", "abc"]
    assert main(["doctor", "data", str(_config(tmp_path, manifest))]) == 0
    out = capsys.readouterr().out
    assert "group_id_formats" in out


@pytest.fixture
def rooted(tmp_path: Path) -> Path:
    """root/ with an image, a symlink to a file outside it, and a file outside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    np.save(root / "in.npy", np.zeros((4, 4), np.float32))
    np.save(tmp_path / "secret.npy", np.zeros((4, 4), np.float32))
    os.symlink(tmp_path / "secret.npy", root / "link.npy")
    return root


@pytest.mark.parametrize(
    "path", ["../secret.npy", "sub/../../secret.npy", "link.npy", "ABS", "~/secret.npy"]
)
def test_allow_outside_root_false_confines_reads(rooted: Path, path: str) -> None:
    path = str(rooted.parent / "secret.npy") if path == "ABS" else path
    rows = [
        {"id": "ok", "text": "a", "image": "sub/../in.npy"},
        {"id": "out", "text": "b", "image": path},
    ]
    manifest = write_jsonl(rooted.parent / "m.jsonl", rows)
    cfg = DataConfig(manifest=str(manifest), root=str(rooted), allow_outside_root=False)
    with pytest.raises(
        DataError,
        match=rf"row 2, column 'image': path '{path}' resolves to .*outside the data root",
    ):
        build_datasets(cfg)
    bundle = build_datasets(cfg.model_copy(update={"on_error": "skip"}))
    assert [r.id for r in bundle.splits["train"].rows] == ["ok"]
    assert bundle.splits["train"].rows[0].paths["image"] == (rooted / "in.npy").resolve()
    # The default keeps paths as written (documented in docs/data.md).
    if not path.startswith("~"):
        open_bundle = build_datasets(DataConfig(manifest=str(manifest), root=str(rooted)))
        assert len(open_bundle.splits["train"]) == 2
