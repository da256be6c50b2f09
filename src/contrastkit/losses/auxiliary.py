"""Auxiliary loss terms: captioning, masked modelling, classification, distillation.

Each is a pure function of tensors from `ModelOutput` / the batch; `MultitaskLoss`
decides which are active and weights them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.errors import DataError


def _zero_like_graph(t: Tensor) -> Tensor:
    """A 0 that is still connected to `t` (so backward works when nothing is scored)."""
    return t.sum() * 0.0


def captioning_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Teacher-forced next-token cross-entropy, ignoring padded targets (−100).

    Shape:
        logits: B x L x V; targets: B x L.
    """
    if (targets != -100).sum() == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        label_smoothing=label_smoothing,
    )


def masked_modelling_loss(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over masked tokens only (MAE, He et al. 2022).

    Shape:
        prediction, target: B x N x D; mask: B x N bool, True where a token was masked.
    """
    if mask.sum() == 0:
        return _zero_like_graph(prediction)
    per_token = (prediction - target.detach()).pow(2).mean(-1)
    return per_token[mask].mean()


def classification_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy on rows with a known label (label −1 = missing, ignored).

    Shape:
        logits: B x C; labels: B.
    """
    if labels.max() >= logits.shape[1]:
        raise DataError(
            f"label index {int(labels.max())} is out of range for {logits.shape[1]} classes "
            "(check the manifest's `label` column and model.classifier.num_classes)"
        )
    if (labels >= 0).sum() == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(logits, labels, ignore_index=-1, label_smoothing=label_smoothing)


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
