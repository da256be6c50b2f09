"""The probe keys of a split: zero-shot accuracy against class prompts and a linear probe
fit on the train split, and the config check that both can run before training starts."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit.config import EvalConfig
from contrastkit.errors import ConfigError
from contrastkit.eval.probes import linear_probe_accuracy, zero_shot_accuracy
from contrastkit.eval.tower_embeddings import TowerEmbeddings, embed_tower
from contrastkit.pairing import text_column_of
from contrastkit.protocols import EmbeddingModel, SplitDataset

log = logging.getLogger(__name__)


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


def zero_shot_keys(
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


def linear_probe_keys(
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
