"""`data.shards`: train from WebDataset shards as a stream (written by `contrastkit shard`).

`data.shards` is the folder `contrastkit shard` wrote (its `index.json` maps splits to
shards and counts), a brace pattern `"DIR/train-{000000..000099}.tar"` (the train split),
or a mapping split -> pattern or list of paths. Without an index the shards are scanned
once for their counts (rows.json members only, no media).

The train split streams (`ShardBatches`, an IterableDataset whose workers decode and
collate; see `plan.py` for the epoch plan, shuffle buffer and exact resume). Other
splits are small and need random access for evaluation: their media are extracted to a
temporary folder and read as a `ManifestDataset`.

Groups reach one batch because a tar sample *is* a group: under `sampler: groups` a
stream's unit is a group and a batch takes K of them, M members each (as
`GroupBatchSampler` does); under `sampler: random` the units are rows, shuffled in the
buffer like the manifest path's random batches.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from contrastkit.data.collate import collate
from contrastkit.data.dataset import ManifestDataset
from contrastkit.data.manifest import is_text_column
from contrastkit.data.media import ReadOptions
from contrastkit.data.shards import plan
from contrastkit.data.shards.samples import GroupRecord, decode_row, extract_rows, read_groups
from contrastkit.data.shards.writer import INDEX_NAME
from contrastkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class ShardInfo:
    """One shard file and its counts."""

    path: str
    rows: int
    groups: int


def _expand(pattern: str | list[str]) -> list[str]:
    from braceexpand import braceexpand

    items = [pattern] if isinstance(pattern, str) else list(pattern)
    return [p for item in items for p in braceexpand(str(Path(item).expanduser()))]


def _scan(path: str) -> tuple[ShardInfo, set[str]]:
    if not Path(path).is_file():
        raise DataError(f"data.shards: shard {path} does not exist")
    rows = groups = 0
    labels: set[str] = set()
    for group in read_groups(path, rows_only=True):
        groups += 1
        rows += len(group.rows)
        labels |= {str(r["values"]["label"]).strip() for r in group.rows if "label" in r["values"]}
    if not groups:
        raise DataError(f"shard {path}: no rows.json member; write shards with `contrastkit shard`")
    return ShardInfo(path, rows, groups), labels


def resolve_shards(
    spec: str | dict[str, Any], train_split: str
) -> tuple[dict[str, list[ShardInfo]], list[str]]:
    """`data.shards` -> (split -> shards with counts, label names).

    Raises:
        DataError: a missing folder, index or shard.
    """
    if isinstance(spec, str) and Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser()
        index_path = folder / INDEX_NAME
        if not index_path.is_file():
            raise DataError(
                f"data.shards: {folder} has no {INDEX_NAME}; write it with `contrastkit shard`"
            )
        index = json.loads(index_path.read_text())
        splits = {
            name: [ShardInfo(str(folder / s["path"]), s["rows"], s["groups"]) for s in shards]
            for name, shards in index["splits"].items()
        }
        return splits, list(index["label_names"])
    mapping = {train_split: spec} if isinstance(spec, str) else dict(spec)
    splits, labels = {}, set()
    for name, pattern in mapping.items():
        scanned = [_scan(p) for p in _expand(pattern)]
        if not scanned:
            raise DataError(f"data.shards: {pattern!r} names no shard")
        splits[name] = [info for info, _ in scanned]
        labels |= set().union(*(found for _, found in scanned))
    ordered = (
        sorted(labels, key=int) if all(x.lstrip("-").isdigit() for x in labels) else sorted(labels)
    )
    return splits, ordered


@dataclass
class ShardSplit:
    """A streamed split: its shards and what the application asks of a split.

    `rows` is empty (a stream has no random access); the data doctor sees only the
    evaluation splits, so run `contrastkit doctor data` on the manifest before sharding.
    """

    shards: list[ShardInfo]
    opts: ReadOptions
    label_index: dict[str, int]
    on_error: str = "raise"
    features_max_n: int = 0
    streaming: bool = True
    rows: list = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        first = next(read_groups(self.shards[0].path, rows_only=True)).rows[0]
        self.columns = {c for c in first["values"] if c != "id"} | set(first["media"])
        self.columns = {c for c in self.columns if is_text_column(c) or c in _INPUTS}
        if self.label_index:
            self.columns.add("label")

    def __len__(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def num_groups(self) -> int:
        """Distinct group ids over every shard of the split."""
        return sum(s.groups for s in self.shards)

    def texts(self, column: str = "text") -> list[str]:
        """Every row's text, in shard order (rows.json members only: no media is read)."""
        return [
            str(r["values"].get(column, ""))
            for s in self.shards
            for g in read_groups(s.path, rows_only=True)
            for r in g.rows
        ]

    def head(self, n: int) -> list[dict[str, Any]]:
        """The first `n` rows of the first shards, decoded (the doctor's probe batch)."""
        out: list[dict[str, Any]] = []
        for s in self.shards:
            for g in read_groups(s.path):
                out += [decode_row(g, r, self.opts, self.label_index) for r in g.rows]
                if len(out) >= n:
                    return out[:n]
        return out

    def input_specs(self) -> dict[str, tuple[int, ...]]:
        """Shapes of one sample per input column (see `ManifestDataset.input_specs`)."""
        sample = self.head(1)[0]
        specs: dict[str, tuple[int, ...]] = {}
        for column in sorted(self.columns - {"label"}):
            if is_text_column(column):
                specs[column] = ()
                continue
            shape = tuple(sample[column].shape)
            if column == "sequence":
                shape = (self.opts.max_length, *shape[1:])
            if column == "features" and len(shape) == 2:
                shape = (max(shape[0], self.features_max_n), shape[1])
            specs[column] = shape
        return specs


_INPUTS = ("image", "video", "sequence", "features", "attributes")


class ShardBatches(IterableDataset):
    """One rank's batches of one epoch from a `ShardSplit` (iterate it in a DataLoader with
    `batch_size=None`; each worker reads its own stream of shards)."""

    def __init__(
        self,
        split: ShardSplit,
        layout: plan.StreamLayout,
        *,
        rank: int,
        members: int | None,
        start_batch: int = 0,
    ) -> None:
        self.split, self.layout, self.rank = split, layout, rank
        self.members, self.start_batch = members, start_batch
        self.units = [s.groups if members else s.rows for s in split.shards]
        if len(self.units) < layout.streams:
            raise ConfigError(
                f"data.shards: {len(self.units)} shards for {layout.streams} streams "
                f"({layout.world_size} processes x {max(layout.workers, 1)} workers); "
                "each stream needs a shard: write smaller shards or use fewer workers"
            )
        self.steps = plan.epoch_steps(self.units, layout)

    def __len__(self) -> int:
        return max(self.steps - self.start_batch, 0)

    def position(self, batch: int) -> dict:
        """Every rank's streams after each rank delivered `batch` batches: the same dict in
        every process (rank 0 saves it; each rank checks it on resume)."""
        per_rank = [
            plan.position(self.units, self.layout, r, batch) for r in range(self.layout.world_size)
        ]
        return {**per_rank[0], "streams": [s for p in per_rank for s in p["streams"]]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        w = max(self.layout.workers, 1)
        if info is None and w > 1:
            raise RuntimeError("ShardBatches with several workers must run inside a DataLoader")
        counts = plan.worker_batches(self.units, self.layout, self.rank)
        # The DataLoader asks its worker 0 first; after a resume the next batch may be
        # another stream's, so loader worker i reads stream worker (i + first) % W.
        worker = ((0 if info is None else info.id) + plan.next_worker(counts, self.start_batch)) % w
        done = plan.consumed_per_worker(counts, self.start_batch)
        yield from self._stream(self.rank * w + worker, done[worker])

    def _stream(self, stream: int, skip_batches: int) -> Iterator[dict[str, Any]]:
        lay = self.layout
        shards = plan.stream_shards(len(self.units), lay, stream)
        first, offset = plan.locate(
            self.units, shards, lay.buffer_shards, skip_batches * lay.units_per_batch
        )
        batch_no, pending = skip_batches, []
        for w, window in enumerate(plan.windows(shards, lay.buffer_shards)):
            if w < first:
                continue
            units = self._window_units(window)
            order = np.random.default_rng([lay.seed, lay.epoch, stream, w]).permutation(len(units))
            for i in order[offset if w == first else 0 :]:
                pending.append(units[i])
                if len(pending) == lay.units_per_batch:
                    yield self._batch(pending, stream, batch_no)
                    pending, batch_no = [], batch_no + 1
        if pending and not lay.drop_last:
            yield self._batch(pending, stream, batch_no)

    def _window_units(self, window: list[int]) -> list[tuple[GroupRecord, Any]]:
        units: list[tuple[GroupRecord, Any]] = []
        for s in window:
            info, before = self.split.shards[s], len(units)
            for group in read_groups(info.path):
                units += [(group, None)] if self.members else [(group, r) for r in group.rows]
            expected = self.units[s]
            if len(units) - before != expected:
                raise DataError(
                    f"shard {info.path}: holds {len(units) - before} units, the index says {expected}"
                )
        return units

    def _batch(self, units: list[tuple[GroupRecord, Any]], stream: int, batch_no: int) -> dict:
        if self.members:
            rng = np.random.default_rng([self.layout.seed, self.layout.epoch, stream, batch_no, 1])
            rows = [(g, g.rows[i]) for g, _ in units for i in _pick(len(g.rows), self.members, rng)]
        else:
            rows = units
        return collate(self._decode(rows))

    def _decode(self, rows: list[tuple[GroupRecord, Any]]) -> list[dict[str, Any]]:
        """Decode every row; under `on_error: skip` a bad row is replaced by the next good
        row of the same batch (it keeps its own id and group, so nothing is mislabelled)."""
        split = self.split
        out: list[dict[str, Any] | None] = []
        for group, row in rows:
            try:
                out.append(decode_row(group, row, split.opts, split.label_index))
            except DataError as err:
                if split.on_error == "raise":
                    raise
                warnings.warn(f"skipping unreadable sample: {err}", stacklevel=2)
                out.append(None)
        good = [s for s in out if s is not None]
        if not good:
            raise DataError(f"no sample of a batch from shard {rows[0][0].shard} is readable")
        return [s if s is not None else good[i % len(good)] for i, s in enumerate(out)]


def _pick(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """M member indices of a group of n rows (with replacement when n < M), as
    `GroupBatchSampler._pick` does."""
    if n >= m:
        return rng.choice(n, size=m, replace=False)
    return np.concatenate([rng.permutation(n), rng.choice(n, size=m - n, replace=True)])


def extracted_split(
    shards: list[ShardInfo], opts: ReadOptions, label_index: dict[str, int], on_error: str
) -> ManifestDataset:
    """An evaluation split read from shards into a temporary folder (kept with the dataset)."""
    tmp = tempfile.TemporaryDirectory(prefix="contrastkit-split-")
    groups = (g for s in shards for g in read_groups(s.path))
    rows, group_index = extract_rows(groups, Path(tmp.name))
    dataset = ManifestDataset(rows, opts, group_index, label_index, shards[0].path, on_error)  # type: ignore[arg-type]
    dataset._extracted = tmp  # type: ignore[attr-defined]  # removed with the dataset
    return dataset
