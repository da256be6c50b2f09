"""EMA teacher: update rule and teacher embeddings that do not disturb the RNG stream."""

from __future__ import annotations

import torch

from contrastkit.train.ema import EMA, TeacherHook
from helpers.train_toys import ToyModel, toy_data


def test_ema_update_is_lerp_towards_params() -> None:
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.75)
    old = ema.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(4.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, old + 0.25 * 4.0)
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_teacher_hook_adds_embeddings_and_keeps_rng() -> None:
    torch.manual_seed(0)
    student, batch = ToyModel(dropout=0.5).train(), toy_data(8)
    hook = TeacherHook(EMA(student, 0.9).model)
    torch.manual_seed(1)
    out = hook(student(batch), batch)
    after_hook = torch.rand(2)
    torch.manual_seed(1)
    student(batch)
    assert torch.equal(torch.rand(2), after_hook)
    teacher_a = out.extras["teacher:a"]
    assert teacher_a.shape == out.embeddings["a"].shape and not teacher_a.requires_grad
