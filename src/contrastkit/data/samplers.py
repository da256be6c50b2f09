"""Batch samplers: deterministic given (seed, epoch), resumable, sliceable across ranks.

Every sampler first builds the epoch's list of *global* batches from a generator seeded
with (seed, epoch), then drops the first `start_batch` of them (exact resume: the tail is
the same sequence), then gives rank r its contiguous slice of each global batch
(`np.array_split` order), so concatenating the ranks' micro-batches in rank order
reproduces the single-process batch. A rank whose slice of a final partial batch is empty
gets no batch for it (use `drop_last: true` under distributed training).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler
from typing_extensions import override


class _GlobalBatchSampler(Sampler[list[int]]):
    """Shared resume and rank-slicing logic; subclasses build `global_batches()`."""

    def __init__(self, *, start_batch: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.start_batch = start_batch
        self.rank = rank
        self.world_size = world_size

    def global_batches(self) -> list[np.ndarray]:
        raise NotImplementedError

    def _local(self) -> list[list[int]]:
        local = []
        for batch in self.global_batches()[self.start_batch :]:
            part = np.array_split(batch, self.world_size)[self.rank]
            if len(part):
                local.append(part.tolist())
        return local

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._local()

    def __len__(self) -> int:
        return len(self._local())


class RandomBatchSampler(_GlobalBatchSampler):
    """Shuffled (or sequential, `shuffle=False`) batches of `batch_size` row indices.

    Args:
        n: dataset size.
        batch_size: global batch size.
        seed, epoch: the permutation is a function of both.
        drop_last: drop a final batch smaller than `batch_size`.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(start_batch=start_batch, rank=rank, world_size=world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.shuffle, self.drop_last = shuffle, drop_last

    @override
    def global_batches(self) -> list[np.ndarray]:
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        return [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]


class GroupBatchSampler(_GlobalBatchSampler):
    """K groups x M members per batch, so every row in a batch has M - 1 positives.

    One epoch visits every group once, in an order shuffled by (seed, epoch); each
    batch takes the next K groups. A group with at least M rows contributes M distinct
    rows chosen at random; a group with fewer than M rows contributes all of its rows and
    fills the rest by sampling its rows *with replacement* (so a one-row group appears M
    times: duplicates are exact positives of each other).

    Args:
        group_ids: the dataset's integer group id per row.
        groups_per_batch: K.
        members_per_group: M.
        drop_last: drop a final batch with fewer than K groups.
    """

    def __init__(
        self,
        group_ids: np.ndarray,
        groups_per_batch: int,
        members_per_group: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = True,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(start_batch=start_batch, rank=rank, world_size=world_size)
        if groups_per_batch < 1 or members_per_group < 1:
            raise ValueError("groups_per_batch and members_per_group must be >= 1")
        self.k, self.m, self.seed, self.epoch = groups_per_batch, members_per_group, seed, epoch
        self.drop_last = drop_last
        ids = np.asarray(group_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        uniques, starts = np.unique(ids[order], return_index=True)
        self.members = np.split(order, starts[1:]) if len(ids) else []
        self.group_keys = uniques

    @override
    def global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = rng.permutation(len(self.members))
        n = len(groups)
        stop = n - n % self.k if self.drop_last else n
        batches = []
        for start in range(0, stop, self.k):
            picks = [self._pick(self.members[g], rng) for g in groups[start : start + self.k]]
            batches.append(np.concatenate(picks))
        return batches

    def _pick(self, members: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(members) >= self.m:
            return rng.choice(members, size=self.m, replace=False)
        fill = rng.choice(members, size=self.m - len(members), replace=True)
        return np.concatenate([rng.permutation(members), fill])


class HardNegativeBatchSampler(_GlobalBatchSampler):
    """Random batches in which each query row brings its mined hard negatives.

    The epoch has exactly as many batches as `RandomBatchSampler` (same `drop_last` rule),
    so mining changes which rows meet, never the step budget. Each batch is filled by
    walking a (seed, epoch) permutation: the next row not yet used this epoch enters as an
    anchor, followed by its negatives (in mined order) that are not already in the batch;
    a negative may appear again later in the epoch as someone else's negative, an anchor
    never twice. When every row has been an anchor, the walk starts over.

    Args:
        negatives: N x k mined row indices per row (-1 = none), see `hard_negatives.py`.
        batch_size: global batch size.
        per_anchor: negatives placed per anchor (at most k).
    """

    def __init__(
        self,
        negatives: np.ndarray,
        batch_size: int,
        *,
        per_anchor: int | None = None,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = True,
        start_batch: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(start_batch=start_batch, rank=rank, world_size=world_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.negatives = np.asarray(negatives, dtype=np.int64)
        self.n, self.batch_size, self.seed, self.epoch = len(negatives), batch_size, seed, epoch
        self.drop_last = drop_last
        k = self.negatives.shape[1] if self.negatives.ndim == 2 else 0
        self.per_anchor = k if per_anchor is None else min(per_anchor, k)

    @override
    def global_batches(self) -> list[np.ndarray]:
        """The epoch's batches: anchors in (seed, epoch) order, each with its negatives."""
        n, size = self.n, self.batch_size
        count = n // size if self.drop_last else -(-n // size)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        used = np.zeros(n, dtype=bool)
        cursor = 0
        batches = []
        for b in range(count):
            want = size if self.drop_last or b < count - 1 else n - size * (count - 1)
            batch: list[int] = []
            members: set[int] = set()
            while len(batch) < want:
                if used.all():
                    used[:] = False
                while used[order[cursor % n]]:
                    cursor += 1
                anchor = int(order[cursor % n])
                used[anchor] = True
                if anchor in members:
                    continue
                chain = [anchor]
                for neg in self.negatives[anchor, : self.per_anchor]:
                    if neg >= 0 and int(neg) not in members and int(neg) not in chain:
                        chain.append(int(neg))
                chain = chain[: want - len(batch)]
                batch.extend(chain)
                members.update(chain)
            batches.append(np.asarray(batch, dtype=np.int64))
        return batches
