"""Auxiliary loss terms: captioning, masked modelling, classification, distillation.

Each is a pure function of tensors from `ModelOutput` / the batch; `MultitaskLoss`
decides which are active and weights them. The per-unit terms (captioning: real tokens;
masked modelling: masked tokens; classification: labelled rows) return a `TermSum`
(sum and count), so that micro-batches and ranks add up before the one division (see
`losses/reduction.py`). Distillation couples the rows of a batch like a contrastive
objective does, so it returns the batch's mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import DataError
from contrastkit.losses.result import TermSum

IGNORE_TOKEN = -100  # padded caption targets
MISSING_LABEL = -1  # rows without a class label


def _count(selected: Tensor, like: Tensor) -> Tensor:
    """Number of True entries as a 0-dim tensor (no gradient), in float32 at least: exact
    up to 2^24 units, where a bf16 count would already round above 256."""
    return selected.sum().to(torch.promote_types(like.dtype, torch.float32))


def captioning_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> TermSum:
    """Teacher-forced next-token cross-entropy summed over real (non-padded) targets.

    Shape:
        logits: B x L x V; targets: B x L (−100 where padded).
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_TOKEN,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return TermSum(total, _count(targets != IGNORE_TOKEN, total))


def masked_modelling_loss(prediction: Tensor, target: Tensor, mask: Tensor) -> TermSum:
    """Squared error (mean over features) summed over masked tokens only (MAE, He et al.
    2022); its mean is the per-token MSE.

    Shape:
        prediction, target: B x N x D; mask: B x N bool, True where a token was masked.
    """
    per_token = (prediction - target.detach()).pow(2).mean(-1)
    total = (per_token * mask.to(per_token.dtype)).sum()
    return TermSum(total, _count(mask, total))


def classification_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> TermSum:
    """Cross-entropy summed over rows with a known label (label −1 = missing, skipped).

    Shape:
        logits: B x C; labels: B.
    """
    if labels.numel() and labels.max() >= logits.shape[1]:
        raise DataError(
            f"label index {int(labels.max())} is out of range for {logits.shape[1]} classes "
            "(check the manifest's `label` column and model.classifier.num_classes)"
        )
    total = F.cross_entropy(
        logits,
        labels,
        ignore_index=MISSING_LABEL,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return TermSum(total, _count(labels != MISSING_LABEL, total))


def distillation_loss(
    student_a: Tensor, student_b: Tensor, teacher_a: Tensor, teacher_b: Tensor, temperature: float
) -> Tensor:
    """Soft cross-entropy between teacher and student similarity distributions, both ways.

    For each row, the teacher's softmax over its similarities to the other side (at
    `temperature`) is the target of the student's log-softmax (Hinton et al. 2015,
    applied to contrastive similarities as in e.g. "CLIP-KD", Yang et al. 2024).

    Shape:
        student_*, teacher_*: B x D (L2-normalised).
    """
    s = student_a @ student_b.T / temperature
    with torch.no_grad():
        t = teacher_a.to(s.dtype) @ teacher_b.to(s.dtype).T / temperature
    rows = -(F.softmax(t, 1) * F.log_softmax(s, 1)).sum(1).mean()
    cols = -(F.softmax(t, 0) * F.log_softmax(s, 0)).sum(0).mean()
    return 0.5 * (rows + cols)
