"""Evaluate a model on one split: embeddings → retrieval metrics, statistics, captioning.

Keys are flat, `<split>/<query>_to_<gallery>/<metric>` (e.g. `test/text_to_image/R@1`),
`<split>/<a>_<b>/<stat>` for embedding statistics, `<split>/<tower>/knn_accuracy`
(leave-one-out k-NN on labelled rows), `<split>/<tower>/zero_shot_accuracy` (nearest
class prompt, `eval.zero_shot_prompt`), `<split>/<tower>/linear_probe_accuracy`
(`eval.linear_probe`, fit on the train split) and `<split>/captioning/<metric>`;
they go to `summary.json` / `eval.json` as they are.

Every metric comes with its trivial baseline (`eval/baselines.py`):
`<split>/<query>_to_<gallery>/chance` (R@1 of a random ranking),
`<split>/<tower>/majority_accuracy` (always the train split's majority class, beside the
k-NN, zero-shot and linear-probe accuracies) and
`<split>/captioning/numeric_{fidelity,error}_baseline` (always writing the train split's
most frequent headline percentage) with `numeric_mode_share` (how often the captions
state that value). The last two need the train split (`train_dataset` or `baselines`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import cast

import torch

from contrastkit.config import EvalConfig
from contrastkit.data import collate, to_device
from contrastkit.errors import ConfigError
from contrastkit.eval.baselines import (
    TrainBaselines,
    majority_accuracy,
    numeric_baseline_keys,
    retrieval_chance,
    train_baselines,
)
from contrastkit.eval.captioning import captioning_metrics
from contrastkit.eval.probe_keys import linear_probe_keys, zero_shot_keys
from contrastkit.eval.probes import knn_accuracy
from contrastkit.eval.retrieval import label_recall_at_1, retrieval_metrics
from contrastkit.eval.retrieval.leave_one_out import self_retrieval_metrics
from contrastkit.eval.stats import embedding_stats
from contrastkit.eval.tower_embeddings import TowerEmbeddings, embed_tower, model_device
from contrastkit.protocols import CaptioningModel, EmbeddingModel, SplitDataset

log = logging.getLogger(__name__)


def retrieval_keys(
    split: str,
    q: str,
    g: str,
    eq: TowerEmbeddings,
    eg: TowerEmbeddings,
    cfg: EvalConfig,
    both: bool,
) -> dict[str, float]:
    """Retrieval keys of one tower pair (and its reverse when `both`), with chance R@1."""
    if q == g:  # within one tower: leave-one-out, a query never retrieves itself
        if len(eq.groups) < 2 or int(torch.unique(eq.groups, return_counts=True)[1].max()) < 2:
            # Every group holds one item, so no query has a positive. This runs after
            # training: raising would lose the run's summary, so skip the pair (the data
            # doctor reports it before training as `retrieval_no_positives`).
            log.warning(
                "%s/%s_to_%s: every group has a single item, so leave-one-out retrieval has "
                "no positives; skipped (give rows of one item the same group)",
                split,
                q,
                g,
            )
            return {}
        labels = eq.labels if bool((eq.labels >= 0).any()) else None
        res = self_retrieval_metrics(
            eq.embeddings, eq.groups, labels=labels, ks=cfg.ks, chunk_size=cfg.chunk_size
        )
        out = {f"{split}/{q}_to_{g}/{k}": v for k, v in res.items()}
        out[f"{split}/{q}_to_{g}/chance"] = retrieval_chance(
            eq.groups, eq.groups, leave_one_out=True
        )
        return out
    two_way = retrieval_metrics(
        eq.embeddings, eg.embeddings, eq.groups, eg.groups, ks=cfg.ks, chunk_size=cfg.chunk_size
    )
    out = {f"{split}/{q}_to_{g}/{k}": v for k, v in two_way["a_to_b"].items()}
    out[f"{split}/{q}_to_{g}/chance"] = retrieval_chance(eq.groups, eg.groups)
    if both:
        out.update({f"{split}/{g}_to_{q}/{k}": v for k, v in two_way["b_to_a"].items()})
        out[f"{split}/{g}_to_{q}/chance"] = retrieval_chance(eg.groups, eq.groups)
    for (qq, gg, a, b), wanted in (((q, g, eq, eg), True), ((g, q, eg, eq), both)):
        if wanted and bool((a.labels >= 0).any()) and bool((b.labels >= 0).any()):
            r1 = label_recall_at_1(
                a.embeddings, b.embeddings, a.labels, b.labels, chunk_size=cfg.chunk_size
            )
            out[f"{split}/{qq}_to_{gg}/class_R@1"] = r1
    return out


def _caption_keys(
    model: CaptioningModel,
    dataset: SplitDataset,
    cfg: EvalConfig,
    split: str,
    batch_size: int,
    headline_mode: float | None,
) -> dict[str, float]:
    column = model.text_column
    n = min(cfg.max_caption_samples, len(dataset))
    gen = cfg.captioning
    hyps: list[str] = []
    device = model_device(model)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, n))])
            hyps += model.generate(
                to_device(batch, device),
                method=gen.method,
                beam_size=gen.beam_size,
                max_length=gen.max_length,
                temperature=gen.temperature,
                top_k=gen.top_k,
                top_p=gen.top_p,
            )
    refs = [str(dataset.rows[i].values.get(column, "")) for i in range(n)]
    metrics = captioning_metrics(hyps, refs)
    if headline_mode is not None:
        metrics.update(numeric_baseline_keys(hyps, refs, headline_mode))
    return {f"{split}/captioning/{k}": v for k, v in metrics.items()}


def _baselines(
    model: EmbeddingModel, train: SplitDataset | None, given: TrainBaselines | None
) -> TrainBaselines:
    """`given`, else read from the train split (none for a streamed one: it has no rows)."""
    if given is not None:
        return given
    if train is None or getattr(train, "streaming", False):
        return TrainBaselines()
    return train_baselines(train, str(getattr(model, "text_column", "text")))


def evaluate(
    model: EmbeddingModel,
    dataset: SplitDataset,
    cfg: EvalConfig,
    *,
    split: str,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 256,
    train_dataset: SplitDataset | None = None,
    baselines: TrainBaselines | None = None,
) -> dict[str, float]:
    """All metrics of one split as flat `<split>/...` keys (see the module docstring).

    Args:
        model: a `ContrastiveModel` (needs `tower_inputs`, `encode`, and for captioning
            `has_captioning` / `generate`).
        dataset: a `ManifestDataset` of the split.
        cfg: the `eval` config section (ks, chunk_size, captioning, max_caption_samples).
        split: name used as the key prefix.
        pairs: (query tower, gallery tower) pairs; a pair and its reverse share one pass.
        train_dataset: the train split, for `eval.linear_probe` (skipped without it, and
            when `split` is the train split itself) and the baselines.
        baselines: the train split's baselines when `train_dataset` is not given (the
            periodic validation reads them once, `eval.baselines.train_baselines`).
    """
    towers = model.tower_names if hasattr(model, "tower_names") else None
    for q, g in pairs:
        for t in (q, g):
            if towers is not None and t not in towers:
                raise ConfigError(f"eval.pairs names no tower {t!r}; towers: {towers}")
    embedded = {
        t: embed_tower(model, dataset, t, batch_size=batch_size)
        for t in dict.fromkeys(sum(map(list, pairs), []))
    }
    out: dict[str, float] = {}
    done: set[frozenset[str]] = set()
    for q, g in pairs:
        key = frozenset((q, g))
        if key in done:
            continue
        done.add(key)
        both = (g, q) in pairs and q != g
        out.update(retrieval_keys(split, q, g, embedded[q], embedded[g], cfg, both))
        groups = torch.as_tensor(dataset.group_ids, dtype=torch.long)
        if q != g and len(torch.unique(groups)) >= 2:
            a = embedded[q].embeddings[embedded[q].row_to_unique]
            b = embedded[g].embeddings[embedded[g].row_to_unique]
            stats = embedding_stats(a, b, groups)
            out.update({f"{split}/{q}_{g}/{k}": v for k, v in stats.items()})
    for name, emb in embedded.items():
        labelled = emb.labels >= 0
        if int(labelled.sum()) >= 2 and len(torch.unique(emb.labels[labelled])) >= 2:
            acc = knn_accuracy(emb.embeddings, emb.labels, k=cfg.knn_k, chunk_size=cfg.chunk_size)
            out[f"{split}/{name}/knn_accuracy"] = acc
    if cfg.zero_shot_prompt:
        out.update(zero_shot_keys(model, dataset, cfg, split, embedded))
    if cfg.linear_probe and train_dataset is not None and train_dataset is not dataset:
        out.update(linear_probe_keys(model, train_dataset, split, embedded, batch_size))
    base = _baselines(model, train_dataset, baselines)
    if base.majority_class is not None:
        for name, emb in embedded.items():  # beside every accuracy measured on the tower
            if any(k.startswith(f"{split}/{name}/") and k.endswith("accuracy") for k in out):
                acc = majority_accuracy(emb.labels, base.majority_class)
                out[f"{split}/{name}/majority_accuracy"] = acc
    if getattr(model, "has_captioning", False) and len(dataset) > 0:
        was_training = model.training
        model.eval()
        try:
            # has_captioning: the model is a CaptioningModel (it has `generate`).
            captioner = cast(CaptioningModel, model)
            mode = base.headline_mode
            out.update(_caption_keys(captioner, dataset, cfg, split, batch_size, mode))
        finally:
            model.train(was_training)
    return out
