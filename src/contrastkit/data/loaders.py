"""Factories: `build_datasets(DataConfig) -> DatasetBundle` and `build_loader(...)`.

These are the only functions in `contrastkit.data` that read config objects.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from contrastkit.config import DataConfig
from contrastkit.data.builtin import BUILTIN_PREFIX, builtin_manifest
from contrastkit.data.collate import collate
from contrastkit.data.dataset import DatasetBundle, ManifestDataset, validate_rows
from contrastkit.data.manifest import SkippedRow, group_names, label_names, read_manifest
from contrastkit.data.media import ReadOptions
from contrastkit.data.samplers import (
    GroupBatchSampler,
    HardNegativeBatchSampler,
    RandomBatchSampler,
)
from contrastkit.data.workers import worker_options
from contrastkit.errors import ConfigError, DataError


def resolve_manifest(cfg: DataConfig) -> Path:
    """A manifest path, generating the builtin dataset for `builtin:NAME`."""
    if cfg.manifest.startswith(BUILTIN_PREFIX):
        name = cfg.manifest[len(BUILTIN_PREFIX) :]
        return builtin_manifest(name, cache_dir=cfg.cache_dir, options=cfg.builtin_options)
    try:
        return Path(cfg.manifest).expanduser()
    except RuntimeError as err:  # "~nosuchuser/m.jsonl"
        raise DataError(f"data.manifest {cfg.manifest!r}: {err}") from None


def build_datasets(
    cfg: DataConfig, *, eval_splits: Sequence[str] = (), require_train: bool = True
) -> DatasetBundle:
    """Read, validate and split the manifest.

    Group ids and label indices are computed over the whole manifest (every split, rows
    with bad media included) so they are comparable across splits, ranks and runs that
    skip different rows. `max_rows` keeps the first N rows of each split, then validates
    them (skipped rows are not replaced).

    Args:
        eval_splits: splits that will be evaluated; one without rows gets a warning
            listing the splits that exist.
        require_train: the train split (`data.train_split`) must have usable rows.

    Raises:
        DataError: a bad row under `on_error: raise`, a missing/unknown manifest, or no
            usable train rows (listing the splits that exist).
    """
    if cfg.shards is not None:
        from contrastkit.data.shards.loaders import build_shard_bundle

        return build_shard_bundle(cfg)
    path = resolve_manifest(cfg)
    root = cfg.root  # read_manifest expands `~` and reports a bad root
    rows, skipped = read_manifest(
        path, root=root, on_error=cfg.on_error, allow_outside_root=cfg.allow_outside_root
    )
    groups = group_names(rows)
    labels = label_names(rows)
    group_index = {g: i for i, g in enumerate(groups)}
    label_index = {name: i for i, name in enumerate(labels)}
    opts = ReadOptions.from_config(cfg)
    by_split: dict[str, list] = {}
    for row in rows:
        by_split.setdefault(row.split, []).append(row)
    splits = {}
    for name, split_rows in by_split.items():
        if cfg.max_rows is not None:
            split_rows = split_rows[: cfg.max_rows]
        good, bad = validate_rows(split_rows, opts, path, cfg.on_error)
        skipped.extend(bad)
        splits[name] = ManifestDataset(good, opts, group_index, label_index, path, cfg.on_error)
    if require_train:
        _check_train_split(path, cfg.train_split, by_split, splits, skipped)
    for name in eval_splits:
        if not len(splits.get(name, ())):
            warnings.warn(
                f"{path}: eval.splits names {name!r}, but it has no usable rows, so it is not "
                f"evaluated; splits: {_split_sizes(splits)}",
                stacklevel=2,
            )
    columns = set().union(*(d.columns for d in splits.values())) if splits else set()
    return DatasetBundle(
        splits=splits,
        label_names=labels,
        group_names=groups,
        skipped=sorted(skipped, key=lambda s: s.line),
        manifest_path=str(path),
        columns=columns,
    )


def _split_sizes(splits: dict[str, ManifestDataset]) -> dict[str, int]:
    return {name: len(d) for name, d in sorted(splits.items())}


def _check_train_split(
    path: Path,
    name: str,
    by_split: dict[str, list],
    splits: dict[str, ManifestDataset],
    skipped: list[SkippedRow],
) -> None:
    """Raise a DataError saying why the train split has no usable rows, if it has none."""
    if len(splits.get(name, ())):
        return
    if name in by_split:
        ids = {r.id for r in by_split[name]}
        first = next(s for s in skipped if s.id in ids)
        raise DataError(
            f"{path}: all {len(ids)} rows of the train split {name!r} were skipped under "
            f"data.on_error: skip (first: row {first.line}, column {first.column!r}: "
            f"{first.reason}); fix those rows, or run with data.on_error=raise"
        )
    unparsed = f"; {len(skipped)} unreadable rows were skipped" if skipped else ""
    raise DataError(
        f"{path}: no rows in the train split {name!r} (data.train_split); splits: "
        f"{_split_sizes(splits)}{unparsed}. Set data.train_split or the rows' `split` "
        "(split names are case-insensitive)"
    )


def build_loader(
    dataset: ManifestDataset,
    cfg: DataConfig,
    *,
    train: bool,
    seed: int,
    epoch: int = 0,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int | None = None,
    negatives: np.ndarray | None = None,
) -> DataLoader:
    """A DataLoader over `dataset` with contrastkit's batch sampler and `collate`.

    Training loaders use `data.sampler` (random, or K groups x M members) and honour
    `data.drop_last`; evaluation loaders are sequential and keep every row. `len()` is
    the number of batches this rank will see. `negatives` (N x k mined rows, see
    `hard_negatives.py`) makes each training batch carry its anchors' hard negatives.
    """
    size = batch_size or (cfg.batch_size if train else cfg.eval_batch_size)
    if getattr(dataset, "streaming", False):  # data.shards: see shards/loaders.py
        from contrastkit.data.shards.loaders import build_stream_loader

        return build_stream_loader(  # type: ignore[return-value]
            dataset,  # type: ignore[arg-type]
            cfg,
            seed=seed,
            epoch=epoch,
            start_batch=start_batch,
            rank=rank,
            world_size=world_size,
            batch_size=size,
        )
    if train and size % world_size:
        raise ConfigError(
            f"data.batch_size ({size}) must be divisible by the number of processes ({world_size})"
        )
    common = {
        "seed": seed,
        "epoch": epoch,
        "start_batch": start_batch,
        "rank": rank,
        "world_size": world_size,
    }
    sampler: RandomBatchSampler | GroupBatchSampler | HardNegativeBatchSampler
    if train and negatives is not None:
        sampler = HardNegativeBatchSampler(negatives, size, drop_last=cfg.drop_last, **common)
    elif train and cfg.sampler.type == "groups":
        m = cfg.sampler.members_per_group
        k = cfg.sampler.groups_per_batch if batch_size is None else None
        k = k or size // m
        if k < 1 or k * m != size:
            raise ConfigError(
                f"data.sampler: batch size {size} is not a whole number of groups of "
                f"members_per_group={m}"
            )
        sampler = GroupBatchSampler(dataset.group_ids, k, m, drop_last=cfg.drop_last, **common)
    else:
        sampler = RandomBatchSampler(
            len(dataset), size, shuffle=train, drop_last=train and cfg.drop_last, **common
        )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, **worker_options(cfg))


def reuse_loader(loader: object, epoch: int, start_batch: int) -> bool:
    """Point a persistent-worker loader at another (epoch, start batch) instead of building
    a new one (which would start new worker processes); False when it cannot be reused.

    The batch sampler runs in the main process and is read afresh at each `iter()`, so
    changing its epoch and start is all a new epoch needs."""
    sampler = getattr(loader, "batch_sampler", None)
    if not getattr(loader, "persistent_workers", False) or not hasattr(sampler, "epoch"):
        return False
    sampler.epoch, sampler.start_batch = epoch, start_batch  # type: ignore[union-attr]
    return True
