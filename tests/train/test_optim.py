"""Parameter groups, lr multipliers and the lr schedule."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.errors import ConfigError
from contrastkit.train.optim.groups import build_optimizer, lr_multiplier
from contrastkit.train.optim.schedule import LrScheduler, lr_at
from helpers.train_toys import ToyCriterion, ToyModel


def _group_of(opt, name):
    return next(g for g in opt.param_groups if name in g["names"])


def test_groups_decay_only_matrices_and_longest_prefix_wins() -> None:
    model, crit = ToyModel(), ToyCriterion()
    scale = {"towers": 0.5, "towers.a.projection": 2.0}
    opt = build_optimizer([model, crit], lr=0.1, weight_decay=0.05, lr_scale=scale)
    assert _group_of(opt, "towers.a.projection.weight")["lr"] == pytest.approx(0.2)
    assert _group_of(opt, "towers.a.projection.weight")["weight_decay"] == 0.05
    assert _group_of(opt, "towers.b.projection.weight")["lr"] == pytest.approx(0.05)
    for name in ("towers.a.norm.weight", "towers.a.encoder.bias", "logit_scale"):
        assert _group_of(opt, name)["weight_decay"] == 0.0, name
    assert _group_of(opt, "classifier.weight")["lr"] == pytest.approx(0.1)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters())) + 1
    assert lr_multiplier("towersX.w", scale) == 1.0  # prefixes match at dot boundaries only


def test_unknown_lr_scale_prefix_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr_scale\.tower: matches no module"):
        build_optimizer([ToyModel()], lr=0.1, weight_decay=0.0, lr_scale={"tower": 2.0})


def test_frozen_param_is_skipped_then_picked_up() -> None:
    model = ToyModel()
    opt = build_optimizer([model], lr=0.1, weight_decay=0.5)
    model.classifier.weight.requires_grad_(False)
    before = model.classifier.weight.detach().clone()
    batch = {"x_a": torch.randn(4, 6), "x_b": torch.randn(4, 6)}
    model(batch).heads["classification"]["logits"].sum().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    assert torch.equal(before, model.classifier.weight)  # neither updated nor decayed
    model.classifier.weight.requires_grad_(True)
    model(batch).heads["classification"]["logits"].sum().backward()
    opt.step()
    assert not torch.equal(before, model.classifier.weight)


def test_lr_at_hand_values() -> None:
    kw = dict(total_steps=10, warmup=2, min_ratio=0.1)
    assert [lr_at(s, kind="cosine", **kw) for s in (0, 1)] == [0.5, 1.0]
    assert lr_at(2, kind="cosine", **kw) == pytest.approx(1.0)
    assert lr_at(6, kind="cosine", **kw) == pytest.approx(
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5))
    )
    assert lr_at(10, kind="cosine", **kw) == pytest.approx(0.1)
    assert lr_at(6, kind="linear", **kw) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_at(9, kind="constant", **kw) == 1.0


def test_scheduler_state_and_phase_scale() -> None:
    opt = build_optimizer([ToyModel()], lr=1.0, weight_decay=0.0, lr_scale={"classifier": 0.5})
    sched = LrScheduler(opt, total_steps=4, warmup=0, kind="linear")
    sched.step()
    sched.set_phase_scale(0.1)
    assert sorted(set(sched.get_last_lr())) == pytest.approx([0.75 * 0.1 * 0.5, 0.075])
    other = LrScheduler(
        build_optimizer([ToyModel()], lr=1.0, weight_decay=0.0),
        total_steps=4,
        warmup=0,
        kind="linear",
    )
    other.load_state_dict(sched.state_dict())
    assert other.get_last_lr()[0] == pytest.approx(0.075)


def test_new_params_get_their_own_multiplier() -> None:
    from contrastkit.train.optim.groups import new_params_multiplier, with_new_params

    # Fine-tuning at 5e-5: new parameters train at 1e-3 (x20); at a scratch rate, x1.
    assert new_params_multiplier(5e-5, None) == pytest.approx(20.0)
    assert new_params_multiplier(2e-3, None) == 1.0
    assert new_params_multiplier(5e-5, 3.0) == 3.0
    scales = with_new_params(
        {"towers.b.projection": 0.5},
        ["towers.a.projection", "towers.b.projection", "logit_scale"],
        lr=5e-5,
    )
    assert scales == {"towers.a.projection": 20.0, "towers.b.projection": 0.5, "logit_scale": 20.0}
    model, crit = ToyModel(), ToyCriterion()
    opt = build_optimizer([model, crit], lr=5e-5, weight_decay=0.05, lr_scale=scales)
    assert _group_of(opt, "logit_scale")["lr"] == pytest.approx(1e-3)
    assert _group_of(opt, "towers.a.projection.weight")["lr"] == pytest.approx(1e-3)
    assert _group_of(opt, "towers.a.encoder.weight")["lr"] == pytest.approx(5e-5)
    assert with_new_params({}, ["logit_scale"], lr=1e-3) == {}
