"""Auxiliary loss terms: distillation here; the head terms beside their heads.

The per-unit terms live with their heads (`models/heads/`: captioning over real tokens,
masked modelling over masked tokens, classification over labelled rows) and return a
`TermSum` (sum and count), so that micro-batches and ranks add up before the one division
(see `losses/reduction.py`); they are re-exported here. Distillation couples the rows of a
batch like a contrastive objective does, so it returns the batch's mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.models.heads.captioning import captioning_loss
from contrastkit.models.heads.classifier import classification_loss
from contrastkit.models.heads.masked import masked_modelling_loss

__all__ = [
    "captioning_loss",
    "classification_loss",
    "distillation_loss",
    "masked_modelling_loss",
]


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
