"""The fixed train sample (eval/train_sample.py) and the chance level of retrieval."""

import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from contrastkit.config import EvalConfig
from contrastkit.eval.baselines import retrieval_chance
from contrastkit.eval.evaluate import evaluate
from contrastkit.eval.train_sample import (
    SAMPLE_MIN,
    RowSample,
    sample_rows,
    sample_size,
    train_sample,
    train_sample_keys,
)
from contrastkit.models.outputs import TowerOutput


@dataclass
class Row:
    id: str
    group: str
    values: dict = field(default_factory=dict)


class Split:
    """`groups` groups of `per_group` caption rows; image i is the one-hot e_i."""

    def __init__(self, groups: int, per_group: int = 2) -> None:
        self.n = groups
        self.rows = [
            Row(f"r{i}-{j}", f"g{i}", {"image": i, "text": f"cap {i} {j}"})
            for i in range(groups)
            for j in range(per_group)
        ]
        self.group_ids = np.array([i for i in range(groups) for _ in range(per_group)])
        self.columns = {"image", "text"}
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        self.reads.append(i)
        row = self.rows[i]
        return {
            "index": i,
            "id": row.id,
            "group_id": int(self.group_ids[i]),
            "image": torch.eye(self.n)[row.values["image"]],
            "text": row.values["text"],
        }


class Model(nn.Module):
    """Image tower: identity. Text tower: the one-hot of the caption's image index, except
    for groups listed in `wrong`, whose captions point at image 0."""

    tower_names = ["image", "text"]

    def __init__(self, n: int, wrong: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.n, self.wrong = n, wrong
        self.w = nn.Parameter(torch.ones(()))

    def tower_inputs(self, tower: str) -> list[str]:
        return [tower]

    def encode(self, tower: str, batch: dict) -> TowerOutput:
        if tower == "image":
            emb = batch["image"]
        else:
            idx = [int(t.split()[1]) for t in batch["text"]]
            emb = torch.eye(self.n)[[0 if i in self.wrong else i for i in idx]]
        return TowerOutput(tokens=emb[:, None], pooled=emb, embedding=emb * self.w)


def test_chance_is_positives_over_gallery_size():
    # 3 queries of groups 0, 0, 1 against a gallery of groups 0, 1, 1, 2: positives 1, 1, 2.
    q, g = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1, 2])
    assert retrieval_chance(q, g) == pytest.approx((1 + 1 + 2) / (3 * 4))
    # leave-one-out over groups 0, 0, 1, 1, 1: each query has (group size - 1) positives
    # among the 4 other items: (1 + 1 + 2 + 2 + 2) / (5 * 4).
    loo = torch.tensor([0, 0, 1, 1, 1])
    assert retrieval_chance(loo, loo, leave_one_out=True) == pytest.approx(8 / 20)
    assert np.isnan(retrieval_chance(torch.tensor([], dtype=torch.long), g))


def test_evaluate_records_chance_beside_every_direction():
    data, model = Split(4, per_group=3), Model(4)
    out = evaluate(
        model, data, EvalConfig(ks=[1]), split="val", pairs=[("text", "image"), ("image", "text")]
    )
    # 12 captions against 4 images: one positive each -> 1/4; 4 images against 12
    # captions: 3 positives each -> 3/12.
    assert out["val/text_to_image/chance"] == pytest.approx(1 / 4)
    assert out["val/image_to_text/chance"] == pytest.approx(3 / 12)


def test_sample_size_is_a_tenth_of_the_validation_groups():
    # val of 4000 captions over 800 images: the image tower embeds 800, the sample 80
    assert sample_size(512, 800, 10_000) == 80
    assert sample_size(512, 180, 10_000) == SAMPLE_MIN  # floor on small val splits
    assert sample_size(100, 8000, 10_000) == 100  # eval.train_sample caps it
    assert sample_size(512, 800, 50) == 50  # no more groups than train has
    assert sample_size(0, 800, 10_000) == 0  # off


def test_sample_is_one_row_per_group_seeded_and_leaves_global_rng_alone():
    groups = np.repeat(np.arange(100), 3)
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    rows = sample_rows(groups, 10, seed=7)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert rows == sample_rows(groups, 10, seed=7)  # a resumed run draws the same rows
    assert rows != sample_rows(groups, 10, seed=8)
    assert len(rows) == 10 and rows == sorted(rows)
    assert len({groups[i] for i in rows}) == 10  # distinct groups
    assert all(i % 3 == 0 for i in rows)  # the first row of each group


def test_train_sample_is_scored_like_validation():
    train = Split(40)
    sample = train_sample(train, EvalConfig(ks=[1]), Split(10), seed=0)
    assert isinstance(sample, RowSample) and len(sample) == SAMPLE_MIN
    # Three sampled groups' captions point at image 0: the same protocol as val run on
    # the sample's rows gives the same numbers.
    wrong = tuple(sorted({int(sample.group_ids[i]) for i in range(3)} - {0}))
    model = Model(40, wrong)
    pairs = [("text", "image"), ("image", "text")]
    keys = train_sample_keys(model, sample, EvalConfig(ks=[1]), pairs, batch_size=8)
    same = evaluate(model, sample, EvalConfig(ks=[1]), split="train_sample", pairs=pairs)
    for k, v in keys.items():
        if k in same:
            assert v == pytest.approx(same[k]), k
    assert keys["train_sample/text_to_image/R@1"] == pytest.approx(1 - len(wrong) / SAMPLE_MIN)
    assert keys["train_sample/text_to_image/chance"] == pytest.approx(1 / SAMPLE_MIN)
    assert keys["train_sample/groups"] == SAMPLE_MIN
    assert keys["train_sample/split_rows"] == 80
    # only the sampled rows were read
    assert sorted(set(train.reads)) == sorted(sample.indices)


def test_train_sample_skips_leave_one_out_pairs_and_can_be_off():
    train = Split(40)
    sample = train_sample(train, EvalConfig(), Split(10), seed=0)
    keys = train_sample_keys(Model(40), sample, EvalConfig(ks=[1]), [("image", "image")], 8)
    assert keys == {}  # one row per group: leave-one-out has no positive
    assert train_sample(train, EvalConfig(train_sample=0), Split(10), seed=0) is None


def test_report_shows_the_train_sample_next_to_val_with_chance():
    from contrastkit.app.report.html import metrics_table

    table = metrics_table(
        {
            "test/text_to_image/R@1": 0.25,
            "val/text_to_image/R@1": 0.01,
            "val/text_to_image/chance": 0.0125,
            "train_sample/text_to_image/R@1": 0.5,
            "train_sample/text_to_image/chance": 0.03125,
        },
        ["text_to_image"],
    )
    rows = re.findall(
        r"<tr><td>([^<]+)</td><td>[^<]+</td><td class=num>([^<]+)</td><td class=num>([^<]+)</td>",
        table,
    )
    assert rows == [
        ("test", "0.250", "-"),
        ("train_sample", "0.500", "0.031"),
        ("val", "0.010", "0.013"),
    ]
