"""Media files that are readable but wrong: NaN/inf values, empty arrays, string dtypes,
float pixels in the wrong unit. Each is a bad row (skipped and named under
`on_error: skip`) or a warning, never a crash in resize or a NaN loss later."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from contrastkit.config import DataConfig
from contrastkit.data import build_datasets
from contrastkit.data.arrays import read_features
from contrastkit.data.images import read_image
from contrastkit.data.media import MediaError
from contrastkit.errors import DataError
from helpers.manifests import write_jsonl


def _bundle(tmp_path: Path, column: str, files: dict[str, np.ndarray], on_error: str = "skip"):
    for name, array in files.items():
        np.save(tmp_path / name, array)
    rows = [{"id": Path(n).stem, "text": f"row {n}", column: n} for n in files]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    cfg = DataConfig(manifest=str(path), on_error=on_error, video={"frames": 2, "size": 4})
    return build_datasets(cfg)


GOOD = {
    "image": np.full((4, 4), 0.5, np.float32),
    "video": np.full((2, 4, 4), 0.5, np.float32),
    "sequence": np.ones((3, 2, 2), np.float32),
    "features": np.ones(6, np.float32),
}


@pytest.mark.parametrize("column", sorted(GOOD))
@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_media_row_is_skipped_and_named(
    tmp_path: Path, column: str, bad_value: float
) -> None:
    bad = np.full_like(GOOD[column], bad_value)
    bundle = _bundle(tmp_path, column, {"good.npy": GOOD[column], "bad.npy": bad})
    assert [r.id for r in bundle.splits["train"].rows] == ["good"]
    (skipped,) = bundle.skipped
    assert (skipped.id, skipped.line, skipped.column) == ("bad", 2, column)
    assert "non-finite values (NaN or inf)" in skipped.reason
    with pytest.raises(DataError, match=rf"row 2, column '{column}': .*non-finite"):
        _bundle(tmp_path, column, {"good.npy": GOOD[column], "bad.npy": bad}, on_error="raise")


def test_one_nan_in_features_is_enough(tmp_path: Path) -> None:
    feats = np.ones((3, 6), np.float32)
    feats[1, 2] = np.nan
    save_file({"features": feats}, str(tmp_path / "f.safetensors"))
    with pytest.raises(MediaError, match="1 non-finite values"):
        read_features(tmp_path / "f.safetensors")


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (0, 0)])
def test_zero_size_image_is_a_row_error(tmp_path: Path, shape: tuple[int, int]) -> None:
    bundle = _bundle(
        tmp_path, "image", {"good.npy": GOOD["image"], "empty.npy": np.zeros(shape, np.float32)}
    )
    assert [s.id for s in bundle.skipped] == ["empty"]
    assert f"got shape {shape}" in bundle.skipped[0].reason
    with pytest.raises(MediaError, match="non-empty"):
        read_image(tmp_path / "empty.npy", 8, 1)


def test_string_dtype_features_are_skipped_under_skip(tmp_path: Path) -> None:
    bundle = _bundle(
        tmp_path,
        "features",
        {"good.npy": GOOD["features"], "words.npy": np.array(["a", "b", "c", "d", "e", "f"])},
    )
    assert [r.id for r in bundle.splits["train"].rows] == ["good"]
    assert [(s.id, s.column) for s in bundle.skipped] == [("words", "features")]
    assert "dtype <U1; it must hold numbers" in bundle.skipped[0].reason


def test_float_image_in_0_255_warns_once_naming_file_and_column(tmp_path: Path) -> None:
    files = {f"big{i}.npy": np.full((4, 4), 200.0, np.float32) for i in range(3)}
    files["fine.npy"] = np.full((4, 4), 0.9, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = _bundle(tmp_path, "image", files)
    messages = [str(w.message) for w in caught if "far outside [0, 1]" in str(w.message)]
    assert len(messages) == 1  # once for the column, not once per file
    assert "3 row(s) of column 'image'" in messages[0]
    assert "big0.npy" in messages[0] and "[200, 200]" in messages[0]
    assert len(bundle.splits["train"]) == 4  # a warning, not a skipped row


def test_float_image_slightly_outside_unit_range_does_not_warn(tmp_path: Path) -> None:
    files = {"a.npy": np.linspace(-0.05, 1.05, 16, dtype=np.float32).reshape(4, 4)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _bundle(tmp_path, "image", files)
