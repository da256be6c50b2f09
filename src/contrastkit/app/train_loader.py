"""The training data as the engine takes it: a loader factory by (epoch, start batch)
and the doctor's fixed probe batch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from contrastkit.config import Config
from contrastkit.errors import ContrastkitError
from contrastkit.train.distributed import DistInfo


def loader_factory(
    dataset: Any, cfg: Config, info: DistInfo, miner: Any = None
) -> tuple[Callable, int]:
    """Train loaders by (epoch, start batch); a hard-negative `miner` supplies (and re-mines
    on schedule) the negatives each epoch's batches are built around."""
    from contrastkit.data import build_loader
    from contrastkit.data.loaders import reuse_loader

    rows = cfg.data.batch_size * cfg.train.accumulate * info.world_size  # global batch per step

    built: dict[str, Any] = {}  # the last loader: its persistent workers serve later epochs

    def make(epoch: int, start_batch: int):
        negatives = None if miner is None else miner.negatives_for(epoch)
        if negatives is None and reuse_loader(built.get("loader"), epoch, start_batch):
            return built["loader"]
        built["loader"] = build_loader(
            dataset,
            cfg.data,
            train=True,
            seed=cfg.train.seed,
            epoch=epoch,
            start_batch=start_batch,
            rank=info.rank,
            world_size=info.world_size,
            batch_size=rows,
            negatives=negatives,
        )
        return built["loader"]

    try:
        steps = len(make(0, 0))
    except TypeError:
        steps = len(dataset) // rows if cfg.data.drop_last else math.ceil(len(dataset) / rows)
    if steps == 0:
        raise ContrastkitError(
            f"the train split has {len(dataset)} rows, fewer than one global batch of {rows} "
            f"(data.batch_size x train.accumulate x world size); lower data.batch_size"
        )
    return make, steps


def train_probe_batch(dataset: Any, size: int) -> dict:
    """The doctor's fixed probe batch: the first `size` rows of the train split."""
    from contrastkit.data import collate

    if getattr(dataset, "streaming", False):
        return collate(dataset.head(size))
    return collate([dataset[i] for i in range(min(size, len(dataset)))])
