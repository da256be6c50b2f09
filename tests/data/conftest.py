"""Tiny media files for the data tests (written into tmp_path, a few KB each)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A folder with one file of every kind the readers accept."""
    rng = np.random.default_rng(0)
    plt.imsave(tmp_path / "a.png", rng.random((10, 12)), cmap="gray")
    np.save(tmp_path / "b.npy", rng.random((8, 8)).astype(np.float32))
    np.save(tmp_path / "clip.npy", (rng.random((5, 6, 6)) * 255).astype(np.uint8))
    np.savez(tmp_path / "clip.npz", frames=rng.random((3, 6, 6, 3)).astype(np.float32))
    (tmp_path / "frames").mkdir()
    for t in range(4):
        plt.imsave(tmp_path / "frames" / f"{t:02d}.png", rng.random((6, 6)), cmap="gray")
    np.save(tmp_path / "seq3.npy", rng.random((3, 4, 2)).astype(np.float32))
    np.save(tmp_path / "seq5.npy", rng.random((5, 4, 2)).astype(np.float32))
    np.save(tmp_path / "feat.npy", rng.random((2, 6)).astype(np.float32))
    save_file(
        {"features": rng.random((3, 6)).astype(np.float32)}, str(tmp_path / "feat.safetensors")
    )
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    np.save(tmp_path / "seq2d.npy", np.zeros((5, 4), dtype=np.float32))
    return tmp_path


def rich_rows() -> list[dict]:
    """Three rows using every modality column; r0 and r1 share a group."""
    return [
        {"id": "r0", "group": "g0", "split": "train", "text": "first", "image": "a.png",
         "video": "clip.npy", "sequence": "seq3.npy", "features": "feat.npy", "label": "cat",
         "attributes": [0.5, 1.0], "note": "ignored"},
        {"id": "r1", "group": "g0", "split": "train", "text": "second", "image": "b.npy",
         "video": "frames", "sequence": "seq5.npy", "features": "feat.safetensors",
         "label": "dog", "attributes": [1, 2]},
        {"id": "r2", "split": "val", "text": "third", "image": "a.png", "video": "clip.npz",
         "sequence": "seq3.npy", "features": "feat.npy", "attributes": [0, 0]},
    ]  # fmt: skip


def write_csv(path: Path, rows: list[dict]) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    fixed = [{k: r.get(k) for k in columns} for r in rows]
    for r in fixed:
        if r["attributes"] is not None:
            r["attributes"] = [float(x) for x in r["attributes"]]
    pq.write_table(pa.Table.from_pylist(fixed), path)
    return path


WRITERS = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}
