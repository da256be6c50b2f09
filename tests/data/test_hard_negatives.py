"""Mined hard negatives: hand-built geometry, backend/chunk equivalence, the batch sampler,
and one tiny end-to-end run through the real train path."""

import json
import math

import numpy as np
import pytest
import torch

from contrastkit.app.mining import mining_findings
from contrastkit.app.run import train
from contrastkit.config import config_from_dict
from contrastkit.data.hard_negatives import HardNegativeMiner, mine_hard_negatives
from contrastkit.data.samplers import HardNegativeBatchSampler, RandomBatchSampler
from contrastkit.errors import ConfigError
from helpers.configs import tiny_doc_code_model


def _unit(degrees):
    r = [math.radians(d) for d in degrees]
    return torch.tensor([[math.cos(a), math.sin(a)] for a in r], dtype=torch.float64)


# Gallery at 0, 10, 90, 180 degrees; each row is its own group.
GALLERY = _unit([0, 10, 90, 180])
GROUPS = np.arange(4)


def test_guard_drops_candidate_scoring_near_the_positive():
    query = _unit([2, 10, 90, 180])  # row 0: positive cos 2 deg, row 1 (10 deg) cos 8 deg
    neg, stats = mine_hard_negatives(query, GALLERY, GROUPS, k=1, max_score_ratio=0.95)
    # cos 8 = 0.990 >= 0.95 * cos 2 = 0.949: dropped; next best is 90 deg (cos 88).
    assert neg[0].tolist() == [2]
    neg, _ = mine_hard_negatives(query, GALLERY, GROUPS, k=1, max_score_ratio=1.0)
    assert neg[0].tolist() == [1]  # 0.990 < 1.0 * 0.99939: kept
    neg, _ = mine_hard_negatives(query, GALLERY, GROUPS, k=1, skip_top=1, max_score_ratio=1.0)
    assert neg[0].tolist() == [2]
    # Row 0 kept gallery row 2 at cos 88 deg; gap = cos 2 - cos 88.
    neg, stats = mine_hard_negatives(query[:1].repeat(1, 1), GALLERY[:1], GROUPS[:1], k=1)
    assert neg.tolist() == [[-1]]  # no other group at all


def test_stats_count_candidates_above_their_positive():
    query = _unit([9, 10, 90, 180])  # row 0 is closer to gallery row 1 than to its own
    neg, stats = mine_hard_negatives(query, GALLERY, GROUPS, k=3, max_score_ratio=0.95)
    # Top-3 candidates: 4 rows x 3 other rows = 12; above positive: only (row 0,
    # gallery 1) with cos 1 > cos 9. Row 1 (10 deg): cos 10 to g0 < its cos 0.
    assert stats.above_positive == pytest.approx(1 / 12)
    assert 1 not in neg[0].tolist()
    findings = mining_findings([(0, stats)])
    assert [f.code for f in findings] == ["hard_negatives_mined"]
    # Every row's nearest other row beats its positive (row 3 at 90 deg: g2 cos 0 = 1 >
    # its cos 90 = 0): all 4 top-1 candidates are above, and the doctor warns.
    shuffled = _unit([10, 0, 180, 90])
    _, bad = mine_hard_negatives(shuffled, GALLERY, GROUPS, k=1, max_score_ratio=0.95)
    assert bad.above_positive == 1.0
    (finding,) = mining_findings([(2, bad)])
    assert finding.code == "hard_negatives_above_positive"
    assert finding.severity == "warning"
    assert finding.evidence["epoch"] == 2


def test_faiss_and_chunked_torch_agree_with_dense():
    pytest.importorskip("faiss")
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(50, 8, generator=gen)
    g = q + 0.5 * torch.randn(50, 8, generator=gen)
    groups = np.repeat(np.arange(25), 2)  # pairs of rows share a group
    args = {"k": 4, "skip_top": 1, "max_score_ratio": 0.9}
    dense, s1 = mine_hard_negatives(q, g, groups, backend="torch", chunk_rows=1000, **args)
    chunked, s2 = mine_hard_negatives(q, g, groups, backend="torch", chunk_rows=7, **args)
    faiss_out, s3 = mine_hard_negatives(q, g, groups, backend="faiss", **args)
    np.testing.assert_array_equal(dense, chunked)
    np.testing.assert_array_equal(dense, faiss_out)
    assert s1.as_dict() == pytest.approx(s2.as_dict(), abs=1e-6)  # float32 matmul chunks
    assert s1.score_gap == pytest.approx(s3.score_gap, abs=1e-6)
    kept = dense[dense >= 0]
    rows = np.nonzero(dense >= 0)[0]
    assert not np.any(groups[kept] == groups[rows])  # never the query's own group


def test_sampler_puts_negatives_with_their_anchor_and_keeps_the_step_budget():
    n, size = 40, 8
    negatives = np.stack([(np.arange(n) + d) % n for d in (1, 2, 3)], axis=1)
    sampler = HardNegativeBatchSampler(negatives, size, seed=3, epoch=1)
    batches = sampler.global_batches()
    assert len(batches) == len(RandomBatchSampler(n, size).global_batches()) == 5
    for batch in batches:
        assert len(batch) == size and len(set(batch.tolist())) == size
    # The first anchor of each batch brings its 3 negatives right after it.
    first = batches[0].tolist()
    assert first[1:4] == negatives[first[0]].tolist()
    again = HardNegativeBatchSampler(negatives, size, seed=3, epoch=1).global_batches()
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
    # Ranks split each global batch: rank 0 + rank 1 = the single-process batch.
    r0 = list(HardNegativeBatchSampler(negatives, size, seed=3, epoch=1, world_size=2))
    r1 = list(HardNegativeBatchSampler(negatives, size, seed=3, epoch=1, rank=1, world_size=2))
    assert r0[0] + r1[0] == first


def test_miner_remines_on_schedule():
    calls = []

    def embed(tower):
        calls.append(tower)
        return GALLERY

    miner = HardNegativeMiner(
        embed, "doc", "code", GROUPS, k=1, skip_top=0, max_score_ratio=0.95, every_epochs=2
    )
    for epoch in range(5):
        miner.negatives_for(epoch)
        miner.negatives_for(epoch)  # a second loader for the same epoch does not re-mine
    assert [e for e, _ in miner.history] == [0, 2, 4]
    assert calls == ["doc", "code"] * 3


def _pydoc_cfg(**hn):
    return config_from_dict(
        {
            "data": {
                "manifest": "builtin:pydoc-code",
                "max_rows": 64,
                "batch_size": 16,
                "hard_negatives": hn,
            },
            "model": tiny_doc_code_model(),
            "loss": {"objectives": [{"type": "clip", "towers": ["doc", "code"]}]},
            "train": {"epochs": 2, "progress": "none", "device": "cpu"},
            "eval": {"splits": ["val"]},
        }
    )


@pytest.mark.slow
def test_train_with_mined_negatives_records_the_gap(tmp_path):
    cfg = _pydoc_cfg(k=3, every_epochs=1)
    summary = train(cfg, tmp_path / "run")
    assert summary["train/steps"] == 2 * (64 // 16)
    data = json.loads((tmp_path / "run" / "data_findings.json").read_text())["findings"]
    mined = [f for f in data if f["code"].startswith("hard_negatives")]
    assert sorted(f["evidence"]["epoch"] for f in mined) == [0, 1]
    assert all(f["evidence"]["queries"] == 64 for f in mined)


def test_mining_on_a_tower_without_text_is_a_config_error(tmp_path):
    cfg = config_from_dict(
        {
            "data": {
                "manifest": "builtin:digits-captions",
                "max_rows": 32,
                "batch_size": 16,
                "image": {"size": 8},
                "hard_negatives": {"k": 2},
            },
            "model": {
                "embed_dim": 8,
                "towers": {"image": {"streams": {"image": {"type": "cnn", "width": 8}}}},
            },
            "loss": {"objectives": [{"type": "triplet", "towers": ["image"]}]},
            "train": {"epochs": 1, "progress": "none", "device": "cpu"},
        }
    )
    with pytest.raises(ConfigError, match=r"data\.hard_negatives: objective .* no tower with text"):
        train(cfg, tmp_path / "run")


def test_hard_negatives_need_the_random_sampler():
    with pytest.raises(ConfigError, match="data.sampler.type: random"):
        config_from_dict(
            {
                "data": {
                    "manifest": "x.jsonl",
                    "hard_negatives": {},
                    "sampler": {"type": "groups"},
                },
                "model": {"towers": {"a": {"streams": {"text": {"type": "builtin_text"}}}}},
            }
        )
