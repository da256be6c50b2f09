"""The watcher on a plain PyTorch loop: hooks, observe, evaluate, close, and its errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from bench.watcher import TwoTower, clip_loss, digits_views, train_plain
from torch import nn

from contrastkit.doctor import attach
from contrastkit.errors import ConfigError


def _codes(findings: list[dict]) -> list[str]:
    return [f["code"] for f in findings if f["severity"] in ("warning", "error")]


@pytest.mark.slow
def test_temperature_10_is_the_top_cause_and_the_run_dir_is_written(tmp_path):
    findings = train_plain(tmp_path, temperature=10.0, steps=20)
    assert findings[0]["code"] == "temperature_out_of_range"
    assert findings[0]["evidence"]["temperature"] == 10.0
    # The fix is in the host's words; contrastkit's keys are kept as evidence.
    assert findings[0]["fix"] == {}
    assert "logit scale at 1/0.07" in findings[0]["fix_note"]
    assert findings[0]["evidence"]["contrastkit_fix"]["loss.objectives.0.temperature"] == 0.07
    for name in (
        "signals.jsonl",
        "findings.json",
        "training_curves.png",
        "config.yaml",
        "run.json",
    ):
        assert (tmp_path / name).is_file(), name
    on_disk = json.loads((tmp_path / "findings.json").read_text())["findings"]
    assert [f["code"] for f in on_disk] == [f["code"] for f in findings]


def test_healthy_plain_loop_is_silent(tmp_path):
    assert _codes(train_plain(tmp_path, steps=20, write=False)) == []


def test_lr_zero_and_decayed_temperature_are_found_through_the_optimizer(tmp_path):
    assert train_plain(tmp_path / "zero", lr=1e-12, steps=20, write=False)[0]["code"] == "lr_zero"
    decayed = _codes(train_plain(tmp_path / "wd", weight_decay=0.1, steps=10, write=False))
    assert "weight_decay_on_temperature" in decayed


def test_hooks_record_the_gradient_the_optimizer_applies(tmp_path):
    torch.manual_seed(0)
    x, noisy, _ = digits_views()
    model = TwoTower()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watcher = attach(model, opt, run_dir=tmp_path, batch_size=16, towers=("image", "view"), every=2)
    norms = []
    for step in range(5):
        a, b = model(x[step * 16 : (step + 1) * 16], noisy[step * 16 : (step + 1) * 16])
        loss = clip_loss(a, b, model.logit_scale.exp())
        watcher.observe(loss, embeddings=(a, b))
        opt.zero_grad()
        loss.backward()
        norms.append(math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.image.parameters())))
        opt.step()
    assert watcher.step == 5
    watcher.state.is_main = False  # nothing to write: the records are what is checked
    records = {r["step"]: r for r in watcher.signals() if r["monitor"] == "gradients"}
    assert sorted(records) == [0, 2, 4]
    for step in (0, 2, 4):
        assert records[step]["grad_norm/image"] == pytest.approx(norms[step], rel=1e-5)
    # The temperature reports under `criterion`, as in a contrastkit run, not as a module.
    assert "grad_norm/criterion" in records[0] and "grad_norm/logit_scale" not in records[0]
    watcher.close()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_loss_alone_disables_only_the_rules_that_need_embeddings(tmp_path):
    model = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watcher = attach(model, opt, run_dir=tmp_path, batch_size=8, every=1)
    for _ in range(6):
        loss = model(torch.ones(8, 4)).pow(2).mean()
        watcher.observe(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    keys = {k for r in watcher.signals() for k in r}
    assert "loss/total" in keys and "grad_norm/weight" in keys and "param_drift/weight" in keys
    assert not any(k.startswith(("align/", "collapse/", "contrastive/logit_scale")) for k in keys)


def test_evaluate_before_training_is_the_start_reference(tmp_path):
    model = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watcher = attach(model, opt, run_dir=tmp_path, batch_size=8, pretrained=True)
    watcher.evaluate({"val/R@1": 0.50})
    for _ in range(3):
        loss = model(torch.ones(8, 4)).pow(2).mean()
        watcher.observe(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    watcher.evaluate({"val/R@1": 0.20})
    top = watcher.close()[0]
    assert top.code == "worse_than_start"
    assert (top.evidence["at_start"], top.evidence["final"], top.evidence["step"]) == (0.5, 0.2, 3)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 0, "at_start/val/R@1": 0.5}, {"step": 3, "val/R@1": 0.2}]
    assert watcher.close() is watcher.close()  # idempotent


def test_bad_inputs_name_the_argument(tmp_path):
    model = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="host='tensorflow'"):
        attach(model, opt, run_dir=tmp_path, batch_size=8, host="tensorflow")
    with pytest.raises(ConfigError, match="batch_size must be >= 1"):
        attach(model, opt, run_dir=tmp_path, batch_size=0)
    watcher = attach(model, opt, run_dir=tmp_path, batch_size=8)
    a = torch.randn(8, 4)
    with pytest.raises(ValueError, match="no contrastive term 'contrastive'"):
        watcher.observe(1.0, terms={"caption": 1.0})
    with pytest.raises(ValueError, match=r"b has shape \[7, 4\]"):
        watcher.observe(1.0, embeddings=(a, a[:7]))
    with pytest.raises(ValueError, match="3 ids for 8 rows"):
        watcher.observe(1.0, embeddings=(a, a), groups=[0, 1, 2])
    with pytest.raises(ValueError, match="expected a scalar"):
        watcher.observe(torch.ones(3))
    with pytest.raises(ValueError, match="no numeric value"):
        watcher.evaluate({"note": "x"})


def test_siglip_fixed_bias_far_from_log_1_over_b_is_found(tmp_path):
    model = nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watcher = attach(
        model, opt, run_dir=tmp_path, batch_size=8, objective="siglip",
        learnable_temperature=False, every=1,
    )  # fmt: skip
    a = torch.randn(8, 4)
    for _ in range(5):
        loss = model(a).pow(2).mean()
        watcher.observe(loss, embeddings=(a, a), logit_scale=10.0, logit_bias=10.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    found = {f.code: f for f in watcher.diagnose()}
    bias = found["siglip_bias_off"]
    # The bias observed at the start (10) against log(1/8) = -2.079.
    assert (bias.evidence["logit_bias"], bias.evidence["log_1_over_B"]) == (10.0, -2.079)
    assert "start the SigLIP bias at -2.08" in bias.fix_note
