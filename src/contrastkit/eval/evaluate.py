"""Evaluate a model on one split: embeddings → retrieval metrics, statistics, captioning.

Keys are flat, `<split>/<query>_to_<gallery>/<metric>` (e.g. `test/text_to_image/R@1`),
`<split>/<a>_<b>/<stat>` for embedding statistics, `<split>/<tower>/knn_accuracy`
(leave-one-out k-NN on labelled rows), `<split>/<tower>/zero_shot_accuracy` (nearest
class prompt, `eval.zero_shot_prompt`), `<split>/<tower>/linear_probe_accuracy`
(`eval.linear_probe`, fit on the train split) and `<split>/captioning/<metric>`;
they go to `summary.json` / `eval.json` as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor

from contrastkit.config import EvalConfig
from contrastkit.data import collate, to_device
from contrastkit.errors import ConfigError
from contrastkit.eval.captioning import captioning_metrics
from contrastkit.eval.leave_one_out import self_retrieval_metrics
from contrastkit.eval.probes import knn_accuracy, linear_probe_accuracy, zero_shot_accuracy
from contrastkit.eval.retrieval import label_recall_at_1, retrieval_metrics
from contrastkit.eval.stats import embedding_stats
from contrastkit.pairing import text_column_of
from contrastkit.protocols import CaptioningModel, EmbeddingModel, SplitDataset

log = logging.getLogger(__name__)


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


def _device(model: EmbeddingModel) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def embed_tower(
    model: EmbeddingModel, dataset: SplitDataset, tower: str, *, batch_size: int = 256
) -> TowerEmbeddings:
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
                out = model.encode(tower, to_device(batch, device))
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
    model: EmbeddingModel, dataset: SplitDataset, tower: str, *, batch_size: int = 256
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
        return {f"{split}/{q}_to_{g}/{k}": v for k, v in res.items()}
    two_way = retrieval_metrics(
        eq.embeddings, eg.embeddings, eq.groups, eg.groups, ks=cfg.ks, chunk_size=cfg.chunk_size
    )
    out = {f"{split}/{q}_to_{g}/{k}": v for k, v in two_way["a_to_b"].items()}
    if both:
        out.update({f"{split}/{g}_to_{q}/{k}": v for k, v in two_way["b_to_a"].items()})
    for (qq, gg, a, b), wanted in (((q, g, eq, eg), True), ((g, q, eg, eq), both)):
        if wanted and bool((a.labels >= 0).any()) and bool((b.labels >= 0).any()):
            r1 = label_recall_at_1(
                a.embeddings, b.embeddings, a.labels, b.labels, chunk_size=cfg.chunk_size
            )
            out[f"{split}/{qq}_to_{gg}/class_R@1"] = r1
    return out


def _caption_keys(
    model: CaptioningModel, dataset: SplitDataset, cfg: EvalConfig, split: str, batch_size: int
) -> dict[str, float]:
    column = model.text_column
    n = min(cfg.max_caption_samples, len(dataset))
    gen = cfg.captioning
    hyps: list[str] = []
    device = _device(model)
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
    return {f"{split}/captioning/{k}": v for k, v in captioning_metrics(hyps, refs).items()}


def _labelled(embedded: dict[str, TowerEmbeddings]) -> dict[str, TowerEmbeddings]:
    """The towers whose embedded rows include at least one class label."""
    return {t: e for t, e in embedded.items() if bool((e.labels >= 0).any())}


def class_names(dataset: SplitDataset) -> list[str]:
    """Label names in class-index order (the manifest's `label` values)."""
    index = getattr(dataset, "label_index", None) or {}
    return [name for name, _ in sorted(index.items(), key=lambda kv: kv[1])]


def _prompt_embeddings(
    model: EmbeddingModel, tower: str, prompts: list[str], names: list[str]
) -> Tensor:
    """C x E class embeddings: each class's prompts embedded by the text tower, averaged
    after L2 normalisation (CLIP's prompt ensembling), then re-normalised."""
    column = text_column_of(model, tower)
    assert column is not None  # the callers pick towers with a text input
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            per_prompt = [
                model.encode(tower, {column: [p.format(label=n) for n in names]})
                .embedding.float()
                .cpu()
                for p in prompts
            ]
    finally:
        model.train(was_training)
    mean = torch.stack([torch.nn.functional.normalize(e, dim=1) for e in per_prompt]).mean(0)
    return torch.nn.functional.normalize(mean, dim=1)


def check_probe_config(
    cfg: EvalConfig, model: EmbeddingModel, label_names: Sequence[str], manifest: str
) -> None:
    """Fail before training when `eval.zero_shot_prompt` / `eval.linear_probe` cannot run
    (no labels in the manifest, or no text tower to embed the prompts)."""
    wanted = [k for k in ("zero_shot_prompt", "linear_probe") if getattr(cfg, k)]
    if wanted and not label_names:
        raise ConfigError(
            f"eval.{wanted[0]} needs class labels, but {manifest} has no 'label' column"
        )
    if cfg.zero_shot_prompt and not any(text_column_of(model, t) for t in model.tower_names):
        raise ConfigError(
            "eval.zero_shot_prompt needs a tower whose only input is a text column; "
            f"towers: {list(model.tower_names)}"
        )


def _zero_shot_keys(
    model: EmbeddingModel,
    dataset: SplitDataset,
    cfg: EvalConfig,
    split: str,
    embedded: dict[str, TowerEmbeddings],
) -> dict[str, float]:
    """Zero-shot accuracy of every labelled non-text tower against the text tower's
    embeddings of the class prompts."""
    zs = cfg.zero_shot_prompt
    prompts = [zs] if isinstance(zs, str) else list(zs or [])
    names = class_names(dataset)
    text_towers = [t for t in embedded if text_column_of(model, t)]
    if not prompts or not names or not text_towers:
        return {}
    classes = _prompt_embeddings(model, text_towers[0], prompts, names)
    return {
        f"{split}/{tower}/zero_shot_accuracy": zero_shot_accuracy(
            emb.embeddings, emb.labels, classes
        )
        for tower, emb in _labelled(embedded).items()
        if tower not in text_towers
    }


def _linear_probe_keys(
    model: EmbeddingModel,
    train_dataset: SplitDataset,
    split: str,
    embedded: dict[str, TowerEmbeddings],
    batch_size: int,
) -> dict[str, float]:
    """Logistic-regression probe per labelled tower: fit on train, scored on `split`.

    A tower whose train rows carry no label is skipped with a warning (this runs after
    training; raising here would lose the run's summary).
    """
    out = {}
    for tower, emb in _labelled(embedded).items():
        train = embed_tower(model, train_dataset, tower, batch_size=batch_size)
        if not bool((train.labels >= 0).any()):
            log.warning("eval.linear_probe: no labelled train rows for tower %r; skipped", tower)
            continue
        acc = linear_probe_accuracy(train.embeddings, train.labels, emb.embeddings, emb.labels)
        out[f"{split}/{tower}/linear_probe_accuracy"] = acc
    return out


def evaluate(
    model: EmbeddingModel,
    dataset: SplitDataset,
    cfg: EvalConfig,
    *,
    split: str,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 256,
    train_dataset: SplitDataset | None = None,
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
            when `split` is the train split itself).
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
    if cfg.zero_shot_prompt:
        out.update(_zero_shot_keys(model, dataset, cfg, split, embedded))
    if cfg.linear_probe and train_dataset is not None and train_dataset is not dataset:
        out.update(_linear_probe_keys(model, train_dataset, split, embedded, batch_size))
    if getattr(model, "has_captioning", False) and len(dataset) > 0:
        was_training = model.training
        model.eval()
        try:
            # has_captioning: the model is a CaptioningModel (it has `generate`).
            captioner = cast(CaptioningModel, model)
            out.update(_caption_keys(captioner, dataset, cfg, split, batch_size))
        finally:
            model.train(was_training)
    return out
