"""Manifest writers for the data tests: rows as JSONL, CSV or Parquet, and a row set that
uses every modality column (the files it names are made by tests/data/conftest.py's `media`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


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
