"""One tower's embeddings of a split, de-duplicated: each unique input is embedded once.

Rows whose input columns for a tower are identical within one group share one embedding
(the five caption rows of one image give one image in the gallery); `row_to_unique` maps
every dataset row back to its embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from contrastkit.data import collate, to_device
from contrastkit.protocols import EmbeddingModel, SplitDataset


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


def model_device(model: EmbeddingModel) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
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
    device, was_training = model_device(model), model.training
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
