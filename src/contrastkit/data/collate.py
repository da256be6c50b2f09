"""`collate`: a list of sample dicts -> one batch dict (the contract in docs/architecture.md).

Only the columns present in the samples appear in the batch. Variable-length inputs are
padded with zeros and get a boolean mask (True = real): `sequence` (B x T x J x C with
`sequence_mask` B x T) and N x F `features` (B x N x F with `features_mask` B x N, which is
present for every batch of N x F features so its presence does not depend on the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate

from contrastkit.data.manifest import is_text_column
from contrastkit.pixels import normalise_pixels


def pad_stack(tensors: list[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack tensors that differ in their first dim: (B x Tmax x ..., mask B x Tmax)."""
    longest = max(t.shape[0] for t in tensors)
    out = tensors[0].new_zeros(len(tensors), longest, *tensors[0].shape[1:])
    mask = torch.zeros(len(tensors), longest, dtype=torch.bool)
    for b, t in enumerate(tensors):
        out[b, : t.shape[0]] = t
        mask[b, : t.shape[0]] = True
    return out, mask


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch samples from `ManifestDataset`.

    Shape:
        index, group_ids, label: B (LongTensor; label -1 where missing)
        image: B x C x H x W (uint8 when every picture is 8-bit, see contrastkit.pixels); video: B x T x C x H x W or B x V x T x C x H x W
        sequence: B x T x J x C (+ sequence_mask B x T)
        features: B x F or B x N x F (+ features_mask B x N)
        attributes: B x A
    """
    if not samples:
        raise ValueError("collate needs at least one sample")
    batch: dict[str, Any] = {
        "index": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "ids": [s["id"] for s in samples],
        "group_ids": torch.tensor([s["group_id"] for s in samples], dtype=torch.long),
    }
    columns = sorted({k for s in samples for k in s} - {"index", "id", "group_id"})
    for column in columns:
        if is_text_column(column):
            batch[column] = [s.get(column, "") for s in samples]
        elif column == "label":
            batch["label"] = torch.tensor([s.get("label", -1) for s in samples], dtype=torch.long)
        elif column == "sequence":
            batch["sequence"], batch["sequence_mask"] = pad_stack([s["sequence"] for s in samples])
        elif column == "features" and samples[0]["features"].dim() == 2:
            batch["features"], batch["features_mask"] = pad_stack([s["features"] for s in samples])
        else:
            tensors = [s[column] for s in samples]
            if len({t.dtype for t in tensors}) > 1:  # 8-bit and other pictures in one batch
                tensors = [normalise_pixels(t) for t in tensors]
            # default_collate stacks straight into shared memory inside a worker, which
            # saves the copy the worker queue would otherwise make of every batch.
            batch[column] = default_collate(tensors)
    return batch


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on `device` (text lists and ids stay as they are)."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()
    }
