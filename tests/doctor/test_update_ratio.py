"""The update-to-weight ratio (monitors/updates.py) and the lr-scale rules built on it."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrastkit.doctor.monitors import UpdateMonitor, update_ratios, weights_before
from contrastkit.doctor.rules import diagnose
from contrastkit.events import Event, fire
from helpers.doctor_toys import (
    ToyCriterion,
    ToyModel,
    make_batch,
    make_config,
    make_state,
    run_steps,
)

MODULES = ("towers.image.encoders.image", "towers.image.projection", "towers.text.projection")


def _signals(ratios: list[float], *, lr: list[float] | None = None, **extra: list[float]):
    """One record per step (10 apart): every model module at `ratios[i]`, lr/base, extras."""
    lr = lr or [1.0] * len(ratios)
    out = []
    for i, r in enumerate(ratios):
        rec = {"step": 10 * i, "monitor": "updates", "update_ratio/criterion": 1e-3}
        rec.update({f"update_ratio/{m}": r for m in MODULES})
        rec["lr/base"] = lr[i]
        rec.update({k: v[i] for k, v in extra.items()})
        out.append(rec)
    return out


def _find(findings, code):
    hits = [f for f in findings if f.code == code]
    return hits[0] if hits else None


def test_one_sgd_step_ratio_is_lr_grad_norm_over_weight_norm():
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    params = [("towers.t.projection." + n, p) for n, p in layer.named_parameters()]
    layer(torch.randn(5, 3)).pow(2).sum().backward()
    grad2 = sum(float(p.grad.pow(2).sum()) for p in layer.parameters())
    weight2 = sum(float(p.detach().pow(2).sum()) for p in layer.parameters())
    before = weights_before(params)
    torch.optim.SGD(layer.parameters(), lr=0.01).step()
    ratio = update_ratios(params, before)
    # SGD: dw = -lr * g, so ||dw|| / ||w|| = lr * ||g|| / ||w|| (weight and bias pooled).
    assert ratio == {"towers.t.projection": pytest.approx(0.01 * math.sqrt(grad2 / weight2))}


def test_frozen_and_all_zero_groups_are_left_out():
    w, z, f = nn.Parameter(torch.ones(2)), nn.Parameter(torch.zeros(2)), nn.Parameter(torch.ones(2))
    f.requires_grad_(False)
    params = [("towers.a.projection.w", w), ("towers.b.projection.b", z), ("classifier.w", f)]
    before = weights_before(params)
    assert set(before) == {"towers.a.projection.w", "towers.b.projection.b"}
    with torch.no_grad():
        w += 0.5
        z += 1.0
    assert update_ratios(params, before) == {"towers.a.projection": pytest.approx(0.5)}


def test_monitor_records_the_optimizer_step_and_leaves_it_alone(tmp_path):
    torch.manual_seed(0)
    model, crit = ToyModel(), ToyCriterion()
    model.eval()  # no dropout: the two runs below must see the same forward
    mon = UpdateMonitor(every=2)
    state = make_state(model, crit, tmp_path, lr=0.05)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    run_steps([mon], state, 3)  # records steps 0 and 2
    assert [r["step"] for r in mon.history] == [0, 2]
    with_monitor = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Same three steps without the monitor: identical weights (it only reads them).
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(start[n])
    run_steps([], make_state(model, crit, None, lr=0.05), 3)
    for n, p in model.named_parameters():
        assert torch.equal(p, with_monitor[n]), n
    # Step 0's record is lr * ||g|| / ||w|| of the first SGD step, per module.
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(start[n])
    state = make_state(model, crit, None, lr=0.05)
    state.batch = make_batch(0)
    crit(model(state.batch), state.batch).total.backward()
    proj = model.towers["text"]["projection"]
    g = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in proj.parameters()))
    w = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in proj.parameters()))
    assert mon.history[0]["update_ratio/towers.text.projection"] == pytest.approx(0.05 * g / w)


def test_a_skipped_step_takes_no_snapshot_and_records_nothing(tmp_path):
    # The engine does not fire AFTER_BACKWARD for a non-finite step: BATCH_END alone is no record.
    mon = UpdateMonitor(every=1)
    state = make_state(ToyModel(), ToyCriterion(), None)
    state.step = 1
    fire([mon], Event.BATCH_END, state)
    assert mon.history == []


def test_lr_too_small_when_every_module_is_below_the_threshold():
    cfg = make_config(["train.lr=1e-7"])
    out = diagnose(_signals([5e-7] * 6), cfg, batch_size=64)
    f = _find(out, "lr_too_small")
    assert f is not None and out[0] is f
    # criterion (its own lr floor) is ignored; the fix brings 5e-7 to the 1e-3 target.
    assert f.evidence["update_ratio_max"] == pytest.approx(5e-7)
    assert "criterion" not in f.evidence["update_ratio"]
    assert f.fix == {"train.lr": pytest.approx(2e-4)}


def test_one_module_in_the_healthy_range_is_not_lr_too_small():
    sig = _signals([5e-7] * 6)
    for r in sig:
        r["update_ratio/towers.text.projection"] = 1e-3
    assert _find(diagnose(sig, make_config(), batch_size=64), "lr_too_small") is None


def test_warmup_and_decay_records_do_not_judge_the_lr():
    # Tiny ratios while the schedule is below half its peak, healthy ones at the peak.
    sig = _signals([1e-8, 1e-3, 1e-3, 1e-3, 1e-8], lr=[0.01, 1.0, 1.0, 0.9, 0.01])
    out = diagnose(sig, make_config(), batch_size=64)
    assert not {"lr_too_small", "lr_too_large"} & {f.code for f in out}


def test_lr_too_large_on_repeated_peak_records():
    cfg = make_config(["train.lr=0.5"])
    # An exploding lr inflates the weights, so later ratios shrink: two large ones suffice.
    sig = _signals([30.0, 0.2, 0.05, 0.04, 0.03])
    f = _find(diagnose(sig, cfg, batch_size=64), "lr_too_large")
    assert f is not None and f.evidence["large_steps"] == {0: 30.0, 10: 0.2}
    # the fix scales lr by target / median of the large steps (15.1)
    assert f.fix["train.lr"] == pytest.approx(0.5 * 1e-3 / 15.1, rel=0.02)
    # one large step among healthy ones is not "repeatedly"
    assert (
        _find(diagnose(_signals([0.3, 1e-3, 1e-3, 1e-3]), cfg, batch_size=64), "lr_too_large")
        is None
    )


def test_loss_at_chance_is_explained_by_lr_too_small_with_its_fix():
    chance = [math.log(64)] * 6
    out = diagnose(
        _signals([5e-7] * 6, **{"loss/contrastive": chance}), make_config(), batch_size=64
    )
    top, at_chance = out[0], _find(out, "loss_at_chance")
    assert top.code == "lr_too_small" and top.severity == "error"
    assert at_chance.evidence["explained_by"] == ["lr_too_small"]
    assert at_chance.fix == top.fix and at_chance.fix


def test_loss_at_chance_without_a_cause_takes_its_fix_from_the_update_ratio():
    chance = {"loss/contrastive": [math.log(64)] * 6}
    cfg = make_config(["train.lr=1e-5"])
    # 2e-5 per step: under the healthy 1e-4 but not "far too small": no lr finding, and the
    # loss at chance itself says to raise the lr, by the measured factor.
    out = diagnose(_signals([2e-5] * 6, **chance), cfg, batch_size=64)
    f = _find(out, "loss_at_chance")
    assert _find(out, "lr_too_small") is None
    assert f.fix == {"train.lr": pytest.approx(5e-4)} and "lr up" in f.fix_note
    # A healthy ratio: no lr change, and a note that says the lr is not the cause.
    f = _find(diagnose(_signals([1e-3] * 6, **chance), cfg, batch_size=64), "loss_at_chance")
    assert f.fix == {} and "the lr is not the cause" in f.fix_note
    # Nothing recorded: still a note, never an empty answer.
    bare = [
        {"step": 10 * i, "loss/contrastive": v} for i, v in enumerate(chance["loss/contrastive"])
    ]
    f = _find(diagnose(bare, cfg, batch_size=64), "loss_at_chance")
    assert "no update-to-weight ratio was recorded" in f.fix_note


def test_weights_that_never_move_are_lr_zero_not_an_absurd_lr():
    sig = _signals([0.0] * 6, lr=[0.0] * 6)
    out = diagnose(sig, make_config(), batch_size=64)
    assert _find(out, "lr_zero") is not None and _find(out, "lr_too_small") is None


def test_collapse_under_sound_steps_does_not_blame_the_lr():
    # Held-out run: pairs misjoined in the train split collapse the embeddings at an update
    # ratio of ~1e-3; "lr / 10" would only slow a run whose data is wrong.
    collapsed = {
        "collapse/image/std_ratio": [0.9, 0.3, 0.02, 0.02, 0.02, 0.02],
        "collapse/image/effective_rank": [20, 5, 1.1, 1.1, 1.1, 1.1],
        "collapse/image/dim": [32] * 6,
    }
    cfg = make_config(["train.lr=1e-3"])
    f = _find(diagnose(_signals([1e-3] * 6, **collapsed), cfg, batch_size=64), "collapse")
    assert f.fix == {} and f.fix_note.startswith("the lr is not the cause")
    assert "paired with the right partner" in f.fix_note
    # Steps of 0.5 of the weights' norm: the lr is the cause, scaled to land on 1e-3 per step.
    big = diagnose(_signals([0.5] * 6, **collapsed), cfg, batch_size=64)
    assert _find(big, "collapse").evidence["explained_by"] == ["lr_too_large"]
    assert _find(big, "lr_too_large").fix["train.lr"] == pytest.approx(2e-6)
