"""Factories for `data.shards`: the bundle of splits and the train stream's loader.

Like `loaders.py`, these are the only shard functions that read config objects.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from contrastkit.config import DataConfig
from contrastkit.data import shard_plan as plan
from contrastkit.data.media import ReadOptions
from contrastkit.data.shards import ShardBatches, ShardSplit, extracted_split, resolve_shards
from contrastkit.errors import ConfigError, DataError

# Past ~8 decoding workers per process the GPU, not the loader, is the limit for the
# towers contrastkit trains, while each worker costs a process and its prefetched batches.
MAX_AUTO_WORKERS = 8


def resolve_workers(num_workers: int | str) -> int:
    """`data.num_workers`; `auto` = the cores this process may use minus one (the main
    process runs the model), capped at `MAX_AUTO_WORKERS`."""
    if num_workers != "auto":
        return int(num_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min((cores or 1) - 1, MAX_AUTO_WORKERS))


def leave_signals_to_the_trainer(worker_id: int) -> None:
    """A loader worker ignores SIGTERM / SIGUSR1 (its `worker_init_fn`).

    Schedulers signal every process of a job; a worker that died on that SIGTERM would fail
    the trainer's next fetch before it could finish its step and checkpoint (the trainer
    handles the signal: train/preemption.py). The trainer still ends its workers when it
    exits: they stop on its shutdown message, or on their own once it is gone.
    """
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def worker_options(cfg: DataConfig) -> dict[str, Any]:
    """DataLoader keywords shared by manifest and shard loaders: workers decode and
    collate; pinned host memory lets `to_device(non_blocking=True)` overlap the copy."""
    workers = resolve_workers(cfg.num_workers)
    pin = torch.cuda.is_available() if cfg.pin_memory == "auto" else bool(cfg.pin_memory)
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if workers > 0:
        options["persistent_workers"] = cfg.persistent_workers
        options["worker_init_fn"] = leave_signals_to_the_trainer
    return options


def build_shard_bundle(cfg: DataConfig) -> Any:
    """Every split of `data.shards`: the train split streams, the others are extracted."""
    from contrastkit.data.loaders import DatasetBundle

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
