from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from contrastkit.data.samplers import GroupBatchSampler, RandomBatchSampler

# 7 groups: sizes 3, 1, 4, 2, 2, 5, 3
GROUPS = np.repeat(np.arange(7), [3, 1, 4, 2, 2, 5, 3])


def test_random_sampler_deterministic_and_epoch_dependent() -> None:
    a = list(RandomBatchSampler(10, 4, seed=1, epoch=0))
    assert a == list(RandomBatchSampler(10, 4, seed=1, epoch=0))
    assert a != list(RandomBatchSampler(10, 4, seed=1, epoch=1))
    assert [len(b) for b in a] == [4, 4]  # drop_last drops the 2 left over
    kept = list(RandomBatchSampler(10, 4, seed=1, drop_last=False))
    assert sorted(i for b in kept for i in b) == list(range(10)) and len(kept[-1]) == 2
    assert list(RandomBatchSampler(5, 2, shuffle=False, drop_last=False)) == [[0, 1], [2, 3], [4]]


def test_group_sampler_gives_k_groups_of_m_members() -> None:
    sampler = GroupBatchSampler(GROUPS, groups_per_batch=3, members_per_group=2, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2  # 7 groups // 3
    seen = set()
    for batch in batches:
        counts = Counter(GROUPS[batch].tolist())
        assert len(batch) == 6 and sorted(counts.values()) == [2, 2, 2]
        for g in counts:  # members really belong to their group
            members = [i for i in batch if GROUPS[i] == g]
            assert len(set(members)) == (1 if g == 1 else 2)  # group 1 has one row: repeated
        seen |= set(counts)
    assert len(seen) == 6  # no group twice in one epoch


def test_group_sampler_without_drop_last_keeps_every_group() -> None:
    batches = list(GroupBatchSampler(GROUPS, 3, 2, seed=4, drop_last=False))
    assert [len(b) for b in batches] == [6, 6, 2]
    assert {int(g) for b in batches for g in GROUPS[b]} == set(range(7))


@pytest.mark.parametrize("make", [
    lambda **kw: RandomBatchSampler(23, 4, seed=3, epoch=2, **kw),
    lambda **kw: GroupBatchSampler(GROUPS, 2, 2, seed=3, epoch=2, **kw),
])  # fmt: skip
def test_resume_gives_the_tail_and_ranks_concatenate(make) -> None:
    full = list(make())
    assert list(make(start_batch=2)) == full[2:]
    assert len(make(start_batch=2)) == len(full) - 2
    rank0, rank1 = list(make(rank=0, world_size=2)), list(make(rank=1, world_size=2))
    assert [a + b for a, b in zip(rank0, rank1, strict=True)] == full
    assert all(len(a) == len(b) for a, b in zip(rank0, rank1, strict=True))
    tail0 = list(make(start_batch=1, rank=0, world_size=2))
    assert tail0 == rank0[1:]


def test_bad_rank() -> None:
    with pytest.raises(ValueError, match="rank"):
        RandomBatchSampler(4, 2, rank=2, world_size=2)
