"""Trivial baselines: what a metric scores without looking at the input.

A metric is only informative next to what a model that ignores its input would score:

- retrieval: **chance**, the R@1 of a random ranking. A query with `p` positives in a
  gallery of `n` items has a positive at rank 1 with probability `p / n` (leave-one-out:
  `p / (n - 1)`, the query itself is not in its gallery); chance is the mean over queries;
- classification, k-NN and zero-shot accuracy: always answering the **majority class** of
  the train split (the only class a constant predictor can know), scored on the split;
- numbers in generated reports: always writing the train split's **most frequent
  headline percentage** (`eval/numbers.py`'s first "%" quantity of a text), scored with the
  same `numeric_fidelity` / `numeric_error` as the model's captions.

`TrainBaselines` is read from the train split's manifest rows once (no media is decoded),
so it costs nothing per evaluation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.eval.captioning import numeric_error, numeric_fidelity
from contrastkit.eval.numbers import first_percentage
from contrastkit.protocols import SplitDataset


def retrieval_chance(
    query_groups: Tensor, gallery_groups: Tensor, *, leave_one_out: bool = False
) -> float:
    """Expected R@1 of a random ranking: mean over queries of positives / gallery size.

    Args:
        query_groups: Q group ids of the queries.
        gallery_groups: G group ids of the gallery items.
        leave_one_out: the queries are the gallery (one tower); each query is left out of
            its own gallery, so it has one positive and one item fewer.

    Returns:
        The chance R@1 in [0, 1]; NaN for an empty query set or gallery.
    """
    n = len(gallery_groups) - (1 if leave_one_out else 0)
    if len(query_groups) == 0 or n <= 0:
        return float("nan")
    ids, counts = torch.unique(gallery_groups, return_counts=True)
    table = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    own = 1 if leave_one_out else 0
    positives = [table.get(g, 0) - own for g in query_groups.tolist()]
    return sum(positives) / (len(positives) * n)


def majority_accuracy(labels: Tensor, majority: int) -> float:
    """Accuracy of always answering class `majority` on the labelled (>= 0) items; NaN
    when no item is labelled."""
    labelled = labels[labels >= 0]
    if len(labelled) == 0:
        return float("nan")
    return float((labelled == majority).float().mean())


@dataclass(frozen=True)
class TrainBaselines:
    """What a constant predictor learns from the train split.

    Attributes:
        majority_class: the most frequent class index of the train rows (None: unlabelled).
        headline_mode: the most frequent headline percentage of the train texts of
            `text_column` (None: no text states one).
        text_column: the column `headline_mode` was read from.
    """

    majority_class: int | None = None
    headline_mode: float | None = None
    text_column: str = "text"


def _mode(values: Sequence[float | int]) -> float | int | None:
    """The most frequent value; ties go to the smallest (so the result is deterministic)."""
    if not values:
        return None
    counts = Counter(values)
    top = max(counts.values())
    return min(v for v, c in counts.items() if c == top)


def train_baselines(train: SplitDataset, text_column: str = "text") -> TrainBaselines:
    """The train split's majority class and most frequent headline percentage, read from
    its manifest rows (no media decoded)."""
    index = getattr(train, "label_index", None) or {}
    labels = [
        index[str(r.values["label"]).strip()]
        for r in train.rows
        if "label" in r.values and str(r.values["label"]).strip() in index
    ]
    headlines = [first_percentage(str(r.values.get(text_column, ""))) for r in train.rows]
    known = [h for h in headlines if h is not None]
    majority = _mode(labels)
    return TrainBaselines(
        majority_class=None if majority is None else int(majority),
        headline_mode=_mode(known),
        text_column=text_column,
    )


def headline_text(value: float) -> str:
    """The constant report of the baseline: the percentage alone ("70%")."""
    return f"{value:g}%"


def numeric_baseline_keys(
    hypotheses: Sequence[str], references: Sequence[str], mode: float
) -> dict[str, float]:
    """The numeric metrics of always writing `mode`%, and how often the model does.

    Returns:
        `numeric_fidelity_baseline`, `numeric_error_baseline` (the constant report scored
        against `references`), `numeric_mode` (the value) and `numeric_mode_share`: the
        share of generated captions stating a headline percentage whose value is `mode`
        (NaN when none states one), and `numeric_mode_share_reference`, the same share
        among the references (how often the mode is right).
    """
    constant = [headline_text(mode)] * len(references)
    stated = [h for h in (first_percentage(x) for x in hypotheses) if h is not None]
    share = sum(h == mode for h in stated) / len(stated) if stated else float("nan")
    truth = [h for h in (first_percentage(x) for x in references) if h is not None]
    right = sum(h == mode for h in truth) / len(truth) if truth else float("nan")
    return {
        "numeric_fidelity_baseline": numeric_fidelity(constant, references),
        "numeric_error_baseline": numeric_error(constant, references),
        "numeric_mode": float(mode),
        "numeric_mode_share": share,
        "numeric_mode_share_reference": right,
    }
