"""A fixed sample of training rows scored like validation: is the model generalising?

A model that retrieves its training pairs but not the validation pairs has memorised
them, or the validation split's pairs do not mean what the training pairs mean (a join
on the wrong key, another distribution). Validation alone cannot tell "nothing learned"
from "learned, but only the train pairs"; this sample can.

The sample is **one row per group**, for groups drawn without replacement by a generator
seeded with the run's seed (`numpy.random.default_rng`, never the global RNG streams, so
training and its exact resume are untouched; a resumed run draws the same rows). One row
per group keeps the gallery as large as the row budget allows: each sampled group is one
gallery item with one query. The sample is scored by the same code as validation
(`evaluate.retrieval_keys`: the same gallery de-duplication, pairs and directions) under
the prefix `train_sample/`, with its own chance level, because its gallery is smaller than
validation's and R@1 is only comparable through chance. Leave-one-out pairs (one tower)
need two rows of a group and are not scored on the sample.

Cost: one row per group costs one forward pass per tower per sampled group. Validation
costs at least one per tower per validation group (the media tower embeds each group's
media once; the text tower every caption), so `SAMPLE_SHARE` of the validation groups
keeps every tower's extra passes within a tenth of validation's (`sample_size`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from contrastkit.config import EvalConfig
from contrastkit.eval.evaluate import retrieval_keys
from contrastkit.eval.tower_embeddings import embed_tower
from contrastkit.protocols import EmbeddingModel, SplitDataset

PREFIX = "train_sample"
# The budget is 10% more evaluation time, and forward passes are most of an evaluation.
# Per tower, validation embeds at least one input per validation group and the sample one
# per sampled group, so a tenth of validation's groups is at most a tenth of any tower's
# passes. (Sizing on rows instead gave 19% on examples/digits.yaml, whose val has 5
# captions per image: the image tower's passes, the costly ones, follow the groups.)
SAMPLE_SHARE = 0.1
# Below 32 gallery items chance is above 3% and one query is 3% of R@1: too coarse to
# tell "learned" from luck. Validation splits under 320 groups take this floor, so the
# share above is not kept there (measured in docs/doctor.md).
SAMPLE_MIN = 32


def sample_size(limit: int, val_groups: int, train_groups: int) -> int:
    """Groups in the sample: `SAMPLE_SHARE` of the validation groups, at least
    `SAMPLE_MIN`, at most `limit` (`eval.train_sample`) and the train split's groups;
    0 when `limit` is 0 (off)."""
    if limit <= 0:
        return 0
    wanted = max(SAMPLE_MIN, math.ceil(SAMPLE_SHARE * val_groups))
    return min(wanted, limit, train_groups)


def sample_rows(group_ids: np.ndarray, n: int, seed: int) -> list[int]:
    """Row indices of `n` groups drawn with `seed`, the first row of each, in row order."""
    first: dict[int, int] = {}
    for i, g in enumerate(group_ids.tolist()):
        first.setdefault(int(g), i)
    groups = sorted(first)
    if n <= 0 or not groups:
        return []
    rng = np.random.default_rng([seed, 0x7E57])  # its own stream; training's is untouched
    picked = rng.choice(len(groups), size=min(n, len(groups)), replace=False)
    return sorted(first[groups[int(k)]] for k in picked)


class RowSample:
    """A view of some rows of a split: a `SplitDataset` of its own (rows, groups, items)."""

    def __init__(self, dataset: Any, rows: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(rows)
        self.rows = [dataset.rows[i] for i in self.indices]
        self.group_ids = np.asarray(dataset.group_ids)[self.indices]
        self.columns = dataset.columns
        self.label_index = getattr(dataset, "label_index", {})

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.dataset[self.indices[i]]


def train_sample(
    train: SplitDataset | None, cfg: EvalConfig, val: SplitDataset | None, seed: int
) -> Any:
    """The fixed train sample of a run, sized on the validation split `val` (None when
    off, or the train split is streamed)."""
    if train is None or getattr(train, "streaming", False) or len(train) == 0:
        return None
    val_groups = len(np.unique(val.group_ids)) if val is not None and len(val) else 0
    n = sample_size(cfg.train_sample, val_groups, len(np.unique(train.group_ids)))
    rows = sample_rows(np.asarray(train.group_ids), n, seed)
    return RowSample(train, rows) if rows else None


def train_sample_keys(
    model: EmbeddingModel,
    sample: SplitDataset,
    cfg: EvalConfig,
    pairs: Sequence[tuple[str, str]],
    batch_size: int,
) -> dict[str, float]:
    """`train_sample/<q>_to_<g>/<metric>` (chance included) of every two-tower pair."""
    pairs = [(q, g) for q, g in pairs if q != g]
    towers = dict.fromkeys(t for pair in pairs for t in pair)
    embedded = {t: embed_tower(model, sample, t, batch_size=batch_size) for t in towers}
    out: dict[str, float] = {}
    done: set[frozenset[str]] = set()
    for q, g in pairs:
        if frozenset((q, g)) in done:
            continue
        done.add(frozenset((q, g)))
        both = (g, q) in pairs
        out.update(retrieval_keys(PREFIX, q, g, embedded[q], embedded[g], cfg, both))
    if out:
        out[f"{PREFIX}/groups"] = float(len(torch.unique(torch.as_tensor(sample.group_ids))))
        # The whole train split's size: a few hundred rows are easy to memorise.
        out[f"{PREFIX}/split_rows"] = float(len(getattr(sample, "dataset", sample)))
    return out
