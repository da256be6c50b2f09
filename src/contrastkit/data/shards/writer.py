"""`write_shards`: a manifest -> WebDataset tar shards plus `index.json` (`contrastkit shard`).

Layout of one shard: one tar *sample per match group* (all rows of a group, so a group is
never split across shards, and a stream can put a group's members in one batch). A
sample's key is `g<number>`; its files are

    g000000042.rows.json          the group's rows: id, group, group_id, split, line and
                                  every column's value (media columns name their member)
    g000000042.0.image.jpg        row 0's image bytes, exactly as on disk
    g000000042.1.video.0.npy      row 1's first view, ...

Groups are shuffled (seeded) before they are cut into shards of about `shard_size` rows,
so consecutive shards are statistically alike and a stream that reads a few of them sees
a mixed sample. `index.json` maps each split to its shards with their row and group
counts (what lets a stream plan an epoch and resume without reading the data), plus the
label names (class indices must not depend on which shards a process reads).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from contrastkit.data.arrays import features_shape
from contrastkit.data.manifest import (
    PATH_COLUMNS,
    Row,
    SkippedRow,
    group_names,
    label_names,
    read_manifest,
    row_error,
)
from contrastkit.data.media import MediaError
from contrastkit.errors import DataError

INDEX_NAME = "index.json"
INDEX_VERSION = 1


class _BadMedia(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column


@dataclass(frozen=True)
class ShardReport:
    """What `write_shards` wrote: shards per split, rows written, rows skipped."""

    index: Path
    shards: dict[str, int]
    rows: int
    skipped: list[SkippedRow]


def _media_members(
    row: Row, index: int, stored: dict[Path, str]
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(column -> member name(s) for rows.json, member name -> bytes) for one row.

    `stored` maps files already in the group's sample to their member, so rows of a group
    that share a file (five captions of one image) store its bytes once."""
    names: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for column in PATH_COLUMNS:
        if column not in row.paths:
            continue
        value = row.paths[column]
        paths = value if isinstance(value, tuple) else (value,)
        members = []
        for view, path in enumerate(paths):
            if path.is_dir():
                raise _BadMedia(column, f"{path} is a folder of frames; shard a video file")
            if not path.is_file():
                raise _BadMedia(column, f"file not found: {path}")
            if path not in stored:
                view_tag = f".{view}" if isinstance(value, tuple) else ""
                stored[path] = f"{index}.{column}{view_tag}{path.suffix.lower()}"
                files[stored[path]] = path.read_bytes()
            members.append(stored[path])
        names[column] = members if isinstance(value, tuple) else members[0]
    return names, files


def _features_n(row: Row) -> int:
    path = row.paths.get("features")
    if path is None or isinstance(path, tuple):
        return 0
    shape = features_shape(path)
    return shape[0] if len(shape) == 2 else 0


def _group_sample(
    key: str, rows: list[Row], group_id: int, manifest: Path, on_error: str, skipped: list
) -> tuple[dict[str, Any] | None, int, int]:
    """The tar sample of one group, its row count and its largest feature grid N."""
    records: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    most_n = 0
    stored: dict[Path, str] = {}
    for row in rows:
        try:
            media, data = _media_members(row, len(records), stored)
            most_n = max(most_n, _features_n(row))
        except (_BadMedia, MediaError) as err:
            column = getattr(err, "column", "features")
            if on_error == "raise":
                raise row_error(manifest, row.line, column, str(err)) from None
            skipped.append(SkippedRow(str(manifest), row.line, row.id, column, str(err)))
            continue
        values = {k: v for k, v in row.values.items() if k not in PATH_COLUMNS}
        records.append(
            {
                "id": row.id,
                "group": row.group,
                "group_id": group_id,
                "split": row.split,
                "line": row.line,
                "values": values,
                "media": media,
            }
        )
        files.update(data)
    if not records:
        return None, 0, 0
    sample = {"__key__": key, "rows.json": json.dumps(records).encode(), **files}
    return sample, len(records), most_n


def write_shards(
    manifest: str | Path,
    out: str | Path,
    shard_size: int,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    on_error: Literal["raise", "skip"] = "raise",
) -> ShardReport:
    """Write `manifest` as shards `<split>-NNNNNN.tar` and `index.json` in `out`.

    Args:
        manifest: a .jsonl / .csv / .parquet manifest (generate builtins first).
        out: the output folder (created; existing shards of the same names are replaced).
        shard_size: rows per shard, approximately: a shard closes before the group that
            would take it past `shard_size` (a group larger than that gets its own shard).
        root: base folder for relative media paths (default: the manifest's folder).
        seed: the shuffle of groups before they are cut into shards.
        on_error: a row whose media cannot be read raises, or is skipped and reported.

    Raises:
        DataError: a bad row (manifest, row, column) under `on_error: raise`.
    """
    import webdataset as wds

    if shard_size < 1:
        raise DataError(f"--shard-size must be >= 1, got {shard_size}")
    manifest, out = Path(manifest), Path(out)
    rows, skipped = read_manifest(manifest, root=root, on_error=on_error)
    group_index = {g: i for i, g in enumerate(group_names(rows))}
    by_group: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        by_group[(row.split, row.group)].append(row)
    keys = sorted(by_group)
    order = np.random.default_rng(seed).permutation(len(keys))
    out.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[dict[str, Any]]] = defaultdict(list)
    writers: dict[str, Any] = {}
    columns: set[str] = set()
    most_n = written = 0

    def close(split: str) -> None:
        if split in writers:
            writers.pop(split).close()

    for k in order:
        split, group = keys[k]
        members = by_group[(split, group)]
        sample, n, n_feat = _group_sample(
            f"g{k:09d}", members, group_index[group], manifest, on_error, skipped
        )
        if sample is None:
            continue
        shards = splits[split]
        if not shards or (shards[-1]["rows"] and shards[-1]["rows"] + n > shard_size):
            close(split)
            name = f"{split}-{len(shards):06d}.tar"
            writers[split] = wds.TarWriter(str(out / name), encoder=False, mtime=0)
            shards.append({"path": name, "rows": 0, "groups": 0})
        writers[split].write(sample)
        shards[-1]["rows"] += n
        shards[-1]["groups"] += 1
        written += n
        most_n = max(most_n, n_feat)
        columns |= {c for r in members for c in r.values}
    for split in list(writers):
        close(split)
    index = {
        "version": INDEX_VERSION,
        "source": str(manifest),
        "seed": seed,
        "splits": dict(splits),
        "label_names": label_names(rows),
        "groups": len(group_index),
        "columns": sorted(columns),
        "features_max_n": most_n,
    }
    path = out / INDEX_NAME
    path.write_text(json.dumps(index, indent=1))
    return ShardReport(path, {s: len(v) for s, v in splits.items()}, written, skipped)
