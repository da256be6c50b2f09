"""Evaluate a model on one split: embeddings → retrieval metrics, statistics, captioning.

Keys are flat, `<split>/<query>_to_<gallery>/<metric>` (e.g. `test/text_to_image/R@1`),
`<split>/<a>_<b>/<stat>` for embedding statistics, `<split>/<tower>/knn_accuracy`
(leave-one-out k-NN on labelled rows) and `<split>/captioning/<metric>`;
they go to `summary.json` / `eval.json` as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import EvalConfig
from contrastkit.data import collate
from contrastkit.errors import ConfigError
from contrastkit.eval.captioning import captioning_metrics
from contrastkit.eval.probes import knn_accuracy
from contrastkit.eval.retrieval import (
    label_recall_at_1,
    retrieval_metrics,
    self_retrieval_metrics,
)
from contrastkit.eval.stats import embedding_stats


@dataclass
class TowerEmbeddings:
    """One tower's de-duplicated embeddings of a split.

    Attributes:
        ids: manifest id of the first row of each unique input.
        embeddings: U x E.
        rows: U, dataset row index of each unique input.
        row_to_unique: N, for every dataset row the index of its unique input.
        groups: U group ids; labels: U class ids (-1 where missing).
    """

    ids: list[str]
    embeddings: Tensor
    rows: list[int]
    row_to_unique: Tensor
    groups: Tensor
    labels: Tensor


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def embed_tower(model: Any, dataset: Any, tower: str, *, batch_size: int = 256) -> TowerEmbeddings:
    """Embed one tower's unique inputs (see `embed_dataset`) and keep the row mapping."""
    columns = list(model.tower_inputs(tower))
    first_of: dict[tuple, int] = {}
    row_to_unique = []
    rows: list[int] = []
    for i, row in enumerate(dataset.rows):
        key = (row.group, tuple(_hashable(row.values.get(c)) for c in columns))
        if key not in first_of:
            first_of[key] = len(rows)
            rows.append(i)
        row_to_unique.append(first_of[key])
    device, was_training = _device(model), model.training
    model.eval()
    chunks, labels = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(rows), batch_size):
                batch = collate([dataset[i] for i in rows[start : start + batch_size]])
                labels.append(batch.get("label", torch.full((len(batch["ids"]),), -1)))
                out = model.encode(tower, _to_device(batch, device))
                chunks.append(out.embedding.detach().float().cpu())
    finally:
        model.train(was_training)
    group_ids = torch.as_tensor(dataset.group_ids, dtype=torch.long)
    return TowerEmbeddings(
        ids=[dataset.rows[i].id for i in rows],
        embeddings=torch.cat(chunks) if chunks else torch.zeros(0, 0),
        rows=rows,
        row_to_unique=torch.tensor(row_to_unique, dtype=torch.long),
        groups=group_ids[rows],
        labels=torch.cat(labels).long() if labels else torch.zeros(0, dtype=torch.long),
    )


def embed_dataset(
    model: Any, dataset: Any, tower: str, *, batch_size: int = 256
) -> tuple[list[str], Tensor, list[int]]:
    """Embeddings of a tower's unique inputs in `dataset`.

    Rows whose input columns for this tower are identical within one group are embedded
    once (the five caption rows of one image give one image in the gallery); the key is
    (group, the raw values of `model.tower_inputs(tower)`).

    Returns:
        (ids, embeddings U x E, dataset row index of each embedding).
    """
    emb = embed_tower(model, dataset, tower, batch_size=batch_size)
    return emb.ids, emb.embeddings, emb.rows


def _retrieval_keys(
    split: str,
    q: str,
    g: str,
    eq: TowerEmbeddings,
    eg: TowerEmbeddings,
    cfg: EvalConfig,
    both: bool,
) -> dict[str, float]:
    if q == g:  # within one tower: leave-one-out, a query never retrieves itself
        labels = eq.labels if bool((eq.labels >= 0).any()) else None
        res = self_retrieval_metrics(
            eq.embeddings, eq.groups, labels=labels, ks=cfg.ks, chunk_size=cfg.chunk_size
        )
        return {f"{split}/{q}_to_{g}/{k}": v for k, v in res.items()}
    res = retrieval_metrics(
        eq.embeddings, eg.embeddings, eq.groups, eg.groups, ks=cfg.ks, chunk_size=cfg.chunk_size
    )
    out = {f"{split}/{q}_to_{g}/{k}": v for k, v in res["a_to_b"].items()}
    if both:
        out.update({f"{split}/{g}_to_{q}/{k}": v for k, v in res["b_to_a"].items()})
    for (qq, gg, a, b), wanted in (((q, g, eq, eg), True), ((g, q, eg, eq), both)):
        if wanted and bool((a.labels >= 0).any()) and bool((b.labels >= 0).any()):
            r1 = label_recall_at_1(
                a.embeddings, b.embeddings, a.labels, b.labels, chunk_size=cfg.chunk_size
            )
            out[f"{split}/{qq}_to_{gg}/class_R@1"] = r1
    return out


def _caption_keys(
    model: Any, dataset: Any, cfg: EvalConfig, split: str, batch_size: int
) -> dict[str, float]:
    column = getattr(model, "text_column", "text")
    n = min(cfg.max_caption_samples, len(dataset))
    gen = cfg.captioning
    hyps: list[str] = []
    device = _device(model)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = collate([dataset[i] for i in range(start, min(start + batch_size, n))])
            hyps += model.generate(
                _to_device(batch, device),
                method=gen.method,
                beam_size=gen.beam_size,
                max_length=gen.max_length,
                temperature=gen.temperature,
                top_k=gen.top_k,
                top_p=gen.top_p,
            )
    refs = [str(dataset.rows[i].values.get(column, "")) for i in range(n)]
    return {f"{split}/captioning/{k}": v for k, v in captioning_metrics(hyps, refs).items()}


def evaluate(
    model: Any,
    dataset: Any,
    cfg: EvalConfig,
    *,
    split: str,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 256,
) -> dict[str, float]:
    """All metrics of one split as flat `<split>/...` keys (see the module docstring).

    Args:
        model: a `ContrastiveModel` (needs `tower_inputs`, `encode`, and for captioning
            `has_captioning` / `generate`).
        dataset: a `ManifestDataset` of the split.
        cfg: the `eval` config section (ks, chunk_size, captioning, max_caption_samples).
        split: name used as the key prefix.
        pairs: (query tower, gallery tower) pairs; a pair and its reverse share one pass.
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
        out.update(_retrieval_keys(split, q, g, embedded[q], embedded[g], cfg, both))
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
    if getattr(model, "has_captioning", False) and len(dataset) > 0:
        was_training = model.training
        model.eval()
        try:
            out.update(_caption_keys(model, dataset, cfg, split, batch_size))
        finally:
            model.train(was_training)
    return out
