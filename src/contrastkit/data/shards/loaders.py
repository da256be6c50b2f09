"""Factories for `data.shards`: the bundle of splits and the train stream's loader.

Like `loaders.py`, these are the only shard functions that read config objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader

from contrastkit.config import DataConfig
from contrastkit.data.dataset import DatasetBundle
from contrastkit.data.media import ReadOptions
from contrastkit.data.shards import plan
from contrastkit.data.shards.splits import ShardBatches, ShardSplit, extracted_split, resolve_shards
from contrastkit.data.workers import worker_options
from contrastkit.errors import ConfigError, DataError


def build_shard_bundle(cfg: DataConfig) -> Any:
    """Every split of `data.shards`: the train split streams, the others are extracted."""
    assert cfg.shards is not None
    splits, labels = resolve_shards(cfg.shards, cfg.train_split)
    if cfg.train_split not in splits:
        raise DataError(
            f"data.shards has no {cfg.train_split!r} split (data.train_split); "
            f"splits: {sorted(splits)}"
        )
    opts = ReadOptions.from_config(cfg)
    label_index = {name: i for i, name in enumerate(labels)}
    datasets: dict[str, Any] = {}
    for name, shards in splits.items():
        if name == cfg.train_split:
            datasets[name] = ShardSplit(shards, opts, label_index, cfg.on_error)
        elif name in (cfg.val_split, cfg.test_split):
            datasets[name] = extracted_split(shards, opts, label_index, cfg.on_error)
    columns = set().union(*(d.columns for d in datasets.values()))
    return DatasetBundle(
        splits=datasets,
        label_names=labels,
        group_names=[],
        manifest_path=str(cfg.shards),
        columns=columns,
    )


class StreamLoader:
    """A rank's loader for one epoch: exactly `len()` batches (the same on every rank),
    and `position()`, the shards done and offset of each of its streams."""

    def __init__(self, loader: DataLoader, batches: ShardBatches) -> None:
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        for i, batch in enumerate(self.loader):
            if i >= len(self):
                return
            yield batch

    def position(self, batch: int) -> dict:
        """Each stream's (every rank's) shards done and offset after `batch` batches."""
        return self.batches.position(batch)


def build_stream_loader(
    split: ShardSplit,
    cfg: DataConfig,
    *,
    seed: int,
    epoch: int,
    start_batch: int,
    rank: int,
    world_size: int,
    batch_size: int,
) -> StreamLoader:
    """The train stream of one epoch for `rank` (`batch_size` is the global batch)."""
    if batch_size % world_size:
        raise ConfigError(
            f"data.batch_size ({batch_size}) must be divisible by the number of processes ({world_size})"
        )
    local = batch_size // world_size
    members = None
    units = local
    if cfg.sampler.type == "groups":
        members = cfg.sampler.members_per_group
        if local % members:
            raise ConfigError(
                f"data.sampler: a process's batch of {local} rows is not a whole number of "
                f"groups of members_per_group={members}"
            )
        units = local // members
    options = worker_options(cfg)
    options.pop("persistent_workers", None)  # a new stream each epoch: nothing to keep
    layout = plan.StreamLayout(
        seed=seed,
        epoch=epoch,
        world_size=world_size,
        workers=options["num_workers"],
        buffer_shards=cfg.shuffle_shards,
        units_per_batch=units,
        drop_last=cfg.drop_last or world_size > 1,
    )
    batches = ShardBatches(split, layout, rank=rank, members=members, start_batch=start_batch)
    return StreamLoader(DataLoader(batches, batch_size=None, **options), batches)
