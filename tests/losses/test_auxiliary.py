"""Auxiliary terms against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.errors import DataError
from contrastkit.losses.auxiliary import (
    captioning_loss,
    classification_loss,
    distillation_loss,
    masked_modelling_loss,
)


def test_captioning_ignores_padding() -> None:
    # Uniform logits over V = 4 for the real token: CE = log 4; padded position ignored.
    logits = torch.zeros(1, 2, 4)
    logits[0, 1] = torch.tensor([100.0, 0.0, 0.0, 0.0])
    loss = captioning_loss(logits, torch.tensor([[2, -100]]))
    assert loss.mean().item() == pytest.approx(math.log(4))
    assert loss.count.item() == 1.0


def test_captioning_label_smoothing_and_all_padding() -> None:
    logits = torch.tensor([[[2.0, 0.0]]])
    smoothed = captioning_loss(logits, torch.tensor([[0]]), label_smoothing=0.2).mean()
    log_p = F.log_softmax(logits[0, 0], 0)
    assert smoothed.item() == pytest.approx(-(0.9 * log_p[0] + 0.1 * log_p[1]).item())
    empty = captioning_loss(logits.requires_grad_(), torch.tensor([[-100]])).mean()
    assert empty.item() == 0.0
    empty.backward()


def test_masked_only_where_masked() -> None:
    pred = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    term = masked_modelling_loss(pred, target, mask)
    assert (term.total.item(), term.count.item()) == (5.0, 2.0)
    assert term.mean().item() == pytest.approx((1 + 4) / 2)


def test_classification_ignores_missing_labels() -> None:
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    loss = classification_loss(logits, torch.tensor([0, -1]))
    assert loss.mean().item() == pytest.approx(math.log(2))
    assert loss.count.item() == 1.0
    nothing = classification_loss(logits.requires_grad_(), torch.tensor([-1, -1]))
    assert (nothing.total.item(), nothing.count.item(), nothing.mean().item()) == (0.0, 0.0, 0.0)
    nothing.mean().backward()  # still on the graph
    with pytest.raises(DataError, match="out of range"):
        classification_loss(logits, torch.tensor([0, 2]))


def test_distillation_zero_gradient_when_student_equals_teacher() -> None:
    g = torch.Generator().manual_seed(0)
    t_a = F.normalize(torch.randn(4, 3, generator=g), dim=1)
    t_b = F.normalize(torch.randn(4, 3, generator=g), dim=1)
    s_a = t_a.clone().requires_grad_()
    loss = distillation_loss(s_a, t_b, t_a, t_b, temperature=0.5)
    # Soft CE equals the teacher's entropy at its minimum, where the gradient vanishes.
    p = F.softmax(t_a @ t_b.T / 0.5, 1)
    q = F.softmax(t_a @ t_b.T / 0.5, 0)
    entropy = 0.5 * (-(p * p.log()).sum(1).mean() - (q * q.log()).sum(0).mean())
    assert loss.item() == pytest.approx(entropy.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, s_a)
    assert grad.abs().max().item() < 1e-5


def test_gradcheck_auxiliary_terms() -> None:
    g = torch.Generator().manual_seed(1)
    s_a, s_b, t_a, t_b = (
        F.normalize(torch.randn(3, 2, generator=g, dtype=torch.float64), dim=1) for _ in range(4)
    )
    s_a.requires_grad_()
    s_b.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: distillation_loss(x, y, t_a, t_b, 0.5), (s_a, s_b))
    pred = torch.randn(2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 2, generator=g, dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    assert torch.autograd.gradcheck(
        lambda p: masked_modelling_loss(p, target, mask).mean(), (pred,)
    )
    logits = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[1, 2, -100], [0, -100, -100]])
    assert torch.autograd.gradcheck(lambda x: captioning_loss(x, targets, 0.1).mean(), (logits,))
