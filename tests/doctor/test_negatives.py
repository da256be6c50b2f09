"""Negatives per query (monitors/negatives.py), its rules, and the batch of one row refused."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from bench.recipes import BASE

from contrastkit.app.cli import main
from contrastkit.doctor.findings import Finding
from contrastkit.doctor.monitors import NegativesMonitor, negatives_per_query, negatives_stats
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.rules.causes import explain
from contrastkit.errors import ConfigError
from helpers.doctor_toys import ToyCriterion, ToyModel, make_config, make_state, run_steps

# B = 8: two groups of 2 (rows 0-1, 2-3) and four singletons.
GROUPS = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5])


def test_negatives_per_query_by_hand():
    # Whole step (cached): 8 rows minus the query's group (2 or 1 rows).
    assert negatives_per_query(GROUPS).tolist() == [6, 6, 6, 6, 7, 7, 7, 7]
    # Naive accumulate 2: micro-batches [0,0,1,1] and [2,3,4,5] of 4 rows each.
    assert negatives_per_query(GROUPS, parts=2).tolist() == [2, 2, 2, 2, 3, 3, 3, 3]
    # Two processes with global negatives: 16 rows in each contrastive batch.
    assert negatives_per_query(GROUPS, world_size=2).tolist() == [14] * 4 + [15] * 4


def test_negatives_stats_per_mode():
    cached = negatives_stats(GROUPS, accumulate=2, mode="cached")
    assert cached["negatives/mean"] == pytest.approx(6.5) and cached["negatives/min"] == 6
    assert cached["negatives/contrastive_batch"] == 8
    assert cached["negatives/loss_floor"] == pytest.approx(math.log(8))
    naive = negatives_stats(GROUPS, accumulate=2, mode="naive")
    assert naive["negatives/mean"] == pytest.approx(2.5)
    assert naive["negatives/contrastive_batch"] == 4 and naive["accumulation"] == "naive"


def test_monitor_records_on_cadence_steps(tmp_path):
    mon = NegativesMonitor(every=2, accumulate=1, mode="cached")
    run_steps([mon], make_state(ToyModel(), ToyCriterion(), tmp_path), 3)
    # make_batch gives 4 rows, each its own group: 3 negatives each.
    assert [r["step"] for r in mon.history] == [0, 2]
    assert mon.history[0]["negatives/mean"] == 3 and mon.history[0]["world_size"] == 1


def _records(mean: float, batch: int, mode: str = "cached", accumulate: int = 1, n: int = 4):
    return [
        {
            "step": 10 * i,
            "monitor": "negatives",
            "negatives/mean": mean,
            "negatives/min": mean,
            "negatives/contrastive_batch": batch,
            "negatives/loss_floor": math.log(batch),
            "accumulation": mode,
            "accumulate": accumulate,
            "world_size": 1,
        }
        for i in range(n)
    ]


def test_too_few_negatives_with_the_loss_floor_and_a_cached_fix():
    out = diagnose(_records(3, 4), make_config(["data.batch_size=4"]), batch_size=4)
    (f,) = [f for f in out if f.code == "too_few_negatives"]
    assert f.evidence["negatives_per_query"] == 3 and f.evidence["contrastive_batch"] == 4
    assert f.evidence["loss_floor"] == pytest.approx(math.log(4), rel=1e-3)
    assert f.evidence["accumulation"] == "cached"
    # 4 rows per micro-batch -> 64 micro-batches reach a contrastive batch of 256.
    assert f.fix == {"train.accumulation": "cached", "train.accumulate": 64}
    assert not [f for f in out if f.code == "naive_accumulation_no_negatives"]


def test_a_batch_of_32_with_shared_groups_is_enough():
    # digits-captions at batch 32 (5 captions per image): 30.7 negatives on average.
    out = diagnose(_records(30.7, 32), make_config(["data.batch_size=32"]), batch_size=32)
    assert not {"too_few_negatives", "naive_accumulation_no_negatives"} & {f.code for f in out}


def test_naive_accumulation_explains_the_few_negatives():
    cfg = make_config(["data.batch_size=4", "train.accumulate=8", "train.accumulation=naive"])
    out = diagnose(_records(3, 4, "naive", 8), cfg, batch_size=32)
    codes = [f.code for f in out]
    assert codes.index("naive_accumulation_no_negatives") < codes.index("too_few_negatives")
    naive = out[codes.index("naive_accumulation_no_negatives")]
    few = out[codes.index("too_few_negatives")]
    assert naive.severity == "warning" and naive.fix == {"train.accumulation": "cached"}
    assert naive.evidence["negatives_with_cached"] == 31
    assert few.evidence["explained_by"] == ["naive_accumulation_no_negatives"]
    assert few.fix == naive.fix and few.severity == "info"


def test_naive_accumulation_of_large_micro_batches_is_only_a_note():
    cfg = make_config(["data.batch_size=512", "train.accumulate=2", "train.accumulation=naive"])
    out = diagnose(_records(511, 512, "naive", 2), cfg, batch_size=1024)
    (f,) = [f for f in out if f.code == "naive_accumulation_no_negatives"]
    assert f.severity == "info"


def test_small_groups_outranks_retrieval_no_positives():
    symptom = Finding("retrieval_no_positives", "warning", {}, "no positives")
    cause = Finding(
        "small_groups", "warning", {}, "singleton groups", {"data.sampler.type": "groups"}
    )
    out = sorted(explain([symptom, cause]), key=Finding.sort_key)
    assert [f.code for f in out] == ["small_groups", "retrieval_no_positives"]
    assert out[1].fix == {"data.sampler.type": "groups"}


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        (["data.batch_size=1"], True),
        (["data.batch_size=1", "train.accumulate=8", "train.accumulation=naive"], True),
        (["data.batch_size=1", "train.accumulate=2"], False),  # cached: 2 rows contrasted
        (["data.batch_size=2"], False),
    ],
)
def test_a_contrastive_batch_of_one_row_is_a_config_error(overrides, refused):
    if not refused:
        make_config(overrides)
        return
    with pytest.raises(ConfigError, match=r"data\.batch_size: 1 row per contrastive batch"):
        make_config(overrides)


def test_triplet_on_one_tower_needs_two_rows_too():
    with pytest.raises(ConfigError, match="triplet objective"):
        make_config(
            ["data.batch_size=1"],
            loss={"objectives": [{"type": "triplet", "towers": ["text"]}]},
        )


def test_train_with_batch_size_1_exits_2_and_writes_nothing(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(BASE, sort_keys=False))
    run_dir = tmp_path / "run"
    args = ["train", str(config), "--run-dir", str(run_dir), "-o", "data.batch_size=1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "data.batch_size" in err and "no negatives" in err
    assert not run_dir.exists()
