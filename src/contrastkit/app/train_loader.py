"""The training data as the engine takes it: a loader factory by (epoch, start batch)
and the doctor's fixed probe batch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from contrastkit.config import Config
from contrastkit.errors import ContrastkitError
from contrastkit.train.distributed import DistInfo

# One positive needs at least one in-batch negative: with a single row, softmax over one
# logit is 1 and the sigmoid loss has no negative pair, so nothing is learned.
MIN_CONTRASTIVE_ROWS = 2


def global_batch_rows(cfg: Config, info: DistInfo) -> int:
    """Rows one optimizer step takes: data.batch_size x train.accumulate x world size."""
    return cfg.data.batch_size * cfg.train.accumulate * info.world_size


def check_batch_fits(dataset: Any, cfg: Config, info: DistInfo) -> None:
    """Refuse a train split smaller than one global batch, before the run writes a file.

    Under `data.drop_last` (the default) such a split gives zero steps; without it one
    short batch would be the whole epoch, so only the drop_last case is an error here.
    A streaming split has no length: `loader_factory` checks it once its loader exists.

    Raises:
        ContrastkitError: the split holds fewer rows than one global batch.
    """
    rows = global_batch_rows(cfg, info)
    if rows < MIN_CONTRASTIVE_ROWS and cfg.loss.objectives:
        raise ContrastkitError(
            f"a global batch of {rows} row gives a contrastive objective no negatives (its "
            "loss is 0 whatever the model does); raise data.batch_size to at least "
            f"{MIN_CONTRASTIVE_ROWS}"
        )
    try:
        size = len(dataset)
    except TypeError:
        return
    if (size < rows and cfg.data.drop_last) or size == 0:
        raise _too_small(size, rows, cfg)


def _too_small(size: int, rows: int, cfg: Config) -> ContrastkitError:
    return ContrastkitError(
        f"the train split ({cfg.data.train_split!r}) has {size} rows, fewer than one global "
        f"batch of {rows} (data.batch_size {cfg.data.batch_size} x train.accumulate "
        f"{cfg.train.accumulate} x world size); lower data.batch_size or add rows"
    )


def loader_factory(
    dataset: Any, cfg: Config, info: DistInfo, miner: Any = None
) -> tuple[Callable, int]:
    """Train loaders by (epoch, start batch); a hard-negative `miner` supplies (and re-mines
    on schedule) the negatives each epoch's batches are built around."""
    from contrastkit.data import build_loader
    from contrastkit.data.loaders import reuse_loader

    rows = global_batch_rows(cfg, info)

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
        raise _too_small(len(dataset), rows, cfg)
    return make, steps


def train_probe_batch(dataset: Any, size: int) -> dict:
    """The doctor's fixed probe batch: the first `size` rows of the train split."""
    from contrastkit.data import collate

    if getattr(dataset, "streaming", False):
        return collate(dataset.head(size))
    return collate([dataset[i] for i in range(min(size, len(dataset)))])
