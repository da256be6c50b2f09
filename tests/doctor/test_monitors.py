from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from contrastkit.config import dump_config
from contrastkit.doctor.monitors import (
    DriftMonitor,
    GradientMonitor,
    InterferenceMonitor,
    LossMonitor,
    NegativesMonitor,
    OptimizerMonitor,
    UpdateMonitor,
    build_monitors,
)
from contrastkit.doctor.rules import diagnose
from contrastkit.doctor.run import diagnose_run
from contrastkit.events import Event, fire
from contrastkit.losses.result import LossOutput
from helpers.doctor_toys import (
    ToyCriterion,
    ToyModel,
    grads_of,
    make_batch,
    make_config,
    make_state,
    run_steps,
)


def test_interference_negative_cosine_and_backward_unchanged(tmp_path):
    torch.manual_seed(0)
    model, crit = (
        ToyModel(),
        ToyCriterion(aux_sign=-1.0, weights={"contrastive": 1.0, "captioning": 0.5}),
    )
    model.eval()  # no dropout: the re-run forward below must be identical
    mon = InterferenceMonitor(every=1)
    state = make_state(model, crit, tmp_path)
    state.batch = make_batch(0)
    state.output = model(state.batch)
    state.loss = crit(state.output, state.batch)
    fire([mon], Event.AFTER_LOSS, state)
    (rec,) = mon.history
    assert rec["grad_cos/contrastive|captioning"] == pytest.approx(-1.0, abs=1e-5)
    assert rec["grad_share/contrastive"] == pytest.approx(
        1 / 1.5, abs=1e-5
    )  # weights 1 vs 0.5, equal norms
    # The engine's backward still works and gives the same gradients as without the monitor.
    state.loss.total.backward()
    with_monitor = grads_of(model)
    model.zero_grad(set_to_none=True)
    crit(model(state.batch), state.batch).total.backward()
    for g1, g2 in zip(with_monitor, grads_of(model), strict=True):
        assert (g1 is None and g2 is None) or torch.allclose(g1, g2)


def test_interference_on_the_probe_batch_when_the_step_terms_are_detached(tmp_path):
    # Under cached accumulation the engine reports detached terms; the monitor measures the
    # conflict on the probe batch without touching .grad, the RNG stream or the train mode.
    torch.manual_seed(0)
    weights = {"contrastive": 1.0, "captioning": 0.5}
    model, crit = ToyModel(), ToyCriterion(aux_sign=-1.0, weights=weights)
    mon = InterferenceMonitor(every=1)
    state = make_state(model, crit, tmp_path)
    state.batch = make_batch(0)
    live = crit(model(state.batch), state.batch)
    terms = {k: v.detach() for k, v in live.terms.items()}
    state.loss = LossOutput(total=live.total.detach(), terms=terms, weights=live.weights)
    rng = torch.get_rng_state()
    fire([mon], Event.AFTER_LOSS, state)
    (rec,) = mon.history
    assert rec["grad_cos/contrastive|captioning"] == pytest.approx(-1.0, abs=1e-5)
    assert rec["grad_share/contrastive"] == pytest.approx(1 / 1.5, abs=1e-5)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    state.probe_batch = None  # nothing to measure on: no record, no error
    fire([mon], Event.AFTER_LOSS, state)
    assert len(mon.history) == 1


def test_interference_finding_from_a_run(tmp_path):
    torch.manual_seed(0)
    model, crit = ToyModel(), ToyCriterion(aux_sign=-1.0)
    mon = InterferenceMonitor(every=1)
    run_steps([mon], make_state(model, crit, tmp_path, lr=0.01), 4)
    cfg = make_config(
        model={
            "towers": make_config().model.model_dump()["towers"],
            "captioning": {"tower": "image"},
        },
        loss={"captioning": {"weight": 1.0}},
    )
    codes = [f.code for f in diagnose(mon.history, cfg)]
    assert "gradient_interference" in codes


def test_collapse_on_constant_embeddings(tmp_path):
    model, crit = ToyModel(collapse=True), ToyCriterion(aux_sign=1.0)
    mon = LossMonitor(every=1, pair=("image", "text"))
    run_steps([mon], make_state(model, crit, tmp_path, lr=0.0), 2)
    rec = mon.history[-1]
    assert rec["collapse/image/std_ratio"] == pytest.approx(0.0, abs=1e-6)
    assert rec["collapse/image/effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert rec["align/gap"] == pytest.approx(0.0, abs=1e-6)
    assert rec["loss/contrastive"] == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-5)
    assert rec["contrastive/logit_scale"] == pytest.approx(torch.tensor(2.0).exp().item())
    assert rec["share/contrastive"] + rec["share/captioning"] == pytest.approx(1.0)
    assert "collapse" in [f.code for f in diagnose(mon.history, make_config())]


def test_drift_zero_for_unchanged_model(tmp_path):
    model, crit = ToyModel(), ToyCriterion()
    mon = DriftMonitor(every=1, towers=["image", "text"])
    run_steps([mon], make_state(model, crit, tmp_path, lr=0.0), 2)
    rec = mon.history[-1]
    assert rec["param_drift/towers.image.encoders.image"] == 0.0
    assert rec["embed_drift/text/cosine"] == pytest.approx(1.0, abs=1e-6)
    assert model.training  # the probe restored train mode


def test_drift_positive_after_training(tmp_path):
    torch.manual_seed(0)
    model, crit = ToyModel(), ToyCriterion(aux_sign=1.0)
    mon = DriftMonitor(every=1, towers=["image", "text"])
    run_steps([mon], make_state(model, crit, tmp_path, lr=0.5), 3)
    assert mon.history[-1]["param_drift/towers.image.projection"] > 0.01
    assert mon.history[-1]["embed_drift/image/drift"] > 0


def test_monitors_do_not_change_the_rng_stream(tmp_path):
    def run(with_monitors: bool) -> torch.Tensor:
        torch.manual_seed(123)
        model, crit = ToyModel(rng_in_encode=True), ToyCriterion()
        cbs = build_monitors(make_config(["doctor.every=1"])) if with_monitors else []
        run_steps(cbs, make_state(model, crit, tmp_path / str(with_monitors), lr=0.1), 3)
        return torch.rand(4)

    assert torch.equal(run(True), run(False))


def test_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    model, crit = ToyModel(), ToyCriterion()
    mons = build_monitors(make_config(["doctor.every=1"]))
    run_steps(mons, make_state(model, crit, tmp_path, lr=0.1), 2)
    for m in mons:
        fresh = type(m)() if not isinstance(m, LossMonitor) else LossMonitor(pair=m.pair)
        fresh.load_state_dict(m.state_dict())
        assert fresh.history == m.history and len(fresh.history) > 0
        if isinstance(m, DriftMonitor):
            assert fresh.param_ref.keys() == m.param_ref.keys()
            assert all(torch.equal(fresh.probe_ref[k], v) for k, v in m.probe_ref.items())
    # every record went to signals.jsonl on rank 0
    lines = (tmp_path / "signals.jsonl").read_text().splitlines()
    assert len(lines) == sum(len(m.history) for m in mons)
    assert {json.loads(x)["monitor"] for x in lines} == {m.name for m in mons}


def test_no_file_off_rank_zero(tmp_path):
    mon = GradientMonitor(every=1)
    run_steps([mon], make_state(ToyModel(), ToyCriterion(), tmp_path, is_main=False), 1)
    assert mon.history and not (tmp_path / "signals.jsonl").exists()


def test_cadence(tmp_path):
    mon = GradientMonitor(every=3)
    run_steps([mon], make_state(ToyModel(), ToyCriterion(), tmp_path), 7)
    assert [r["step"] for r in mon.history] == [0, 3, 6]


def test_optimizer_sanity(tmp_path):
    model, crit = ToyModel(), ToyCriterion()
    opt = torch.optim.AdamW(
        [
            {"params": list(model.towers["image"].parameters())},
            {"params": [crit.logit_scale], "weight_decay": 0.1},
        ],
        lr=0.0,
    )
    state = make_state(model, crit, tmp_path)
    state.optimizer = opt
    model.towers["text"]["encoders"]["text"].weight.requires_grad_(False)
    mon, grads = OptimizerMonitor(every=1), GradientMonitor(every=1)
    run_steps([mon, grads], state, 2)
    start = mon.history[0]
    assert start["event"] == "fit_start"
    assert start["not_in_optimizer"] == 3  # text encoder bias, text projection weight + bias
    assert start["temperature_groups"] == [
        {"param": "logit_scale", "group": 1, "weight_decay": 0.1}
    ]
    assert [r["lr/max"] for r in mon.history if r.get("event") == "lr"] == [0.0, 0.0]
    assert grads.history[0]["frozen_with_grad"] == 0
    codes = {f.code for f in diagnose(mon.history + grads.history, make_config())}
    assert {"params_not_in_optimizer", "weight_decay_on_temperature", "lr_zero"} <= codes


def test_optimizer_monitor_records_the_temperatures_own_lr(tmp_path):
    from contrastkit.train.optim.groups import build_optimizer

    model, crit = ToyModel(), ToyCriterion()
    opt = build_optimizer([model, crit], lr=1e-4, weight_decay=0.0, lr_scale={"logit_scale": 20})
    state = make_state(model, crit, tmp_path)
    state.optimizer = opt
    mon = OptimizerMonitor(every=1)
    run_steps([mon], state, 1)
    (lr,) = [r for r in mon.history if r.get("event") == "lr"]
    assert lr["lr/temperature"] == pytest.approx(2e-3) and lr["lr/base"] == pytest.approx(1e-4)


def test_frozen_param_with_grad(tmp_path):
    model = ToyModel()
    state = make_state(model, ToyCriterion(), tmp_path)
    w = model.towers["image"]["projection"].weight
    w.grad = torch.ones_like(w)
    w.requires_grad_(False)
    mon = GradientMonitor(every=1)
    fire([mon], Event.AFTER_BACKWARD, state)
    assert mon.history[0]["frozen_with_grad_names"] == ["towers.image.projection.weight"]


def test_build_monitors_and_diagnose_run(tmp_path):
    cfg = make_config(["doctor.every=1"])
    cbs = build_monitors(cfg)
    assert {type(c) for c in cbs} == {
        OptimizerMonitor,
        LossMonitor,
        InterferenceMonitor,
        GradientMonitor,
        DriftMonitor,
        UpdateMonitor,
        NegativesMonitor,
    }
    assert build_monitors(make_config(["doctor.enabled=false"])) == []
    assert InterferenceMonitor not in {
        type(c) for c in build_monitors(make_config(["doctor.interference=false"]))
    }
    torch.manual_seed(0)
    run_steps(cbs, make_state(ToyModel(), ToyCriterion(), tmp_path), 2)
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(dump_config(cfg))
    findings = diagnose_run(tmp_path)
    data = json.loads((tmp_path / "findings.json").read_text())
    assert [f["code"] for f in data["findings"]] == [f.code for f in findings]
    assert (tmp_path / "training_curves.png").stat().st_size > 10_000


def test_nan_loss_counted_between_cadence_steps(tmp_path):
    mon = LossMonitor(every=100)
    state = make_state(ToyModel(), ToyCriterion(), tmp_path)
    state.batch = make_batch()
    state.output = state.model(state.batch)
    state.loss = state.criterion(state.output, state.batch)
    fire([mon], Event.AFTER_LOSS, state)  # step 0 recorded
    state.step = 1
    state.loss.total = torch.tensor(float("nan"))
    fire([mon], Event.AFTER_LOSS, state)  # not a cadence step: counted on the device
    assert mon.flush_nonfinite() == 1


def test_params_helper_dedups_shared_modules():
    shared = nn.Linear(2, 2)
    model = nn.ModuleDict({"a": shared, "b": shared})
    from contrastkit.doctor.signals import named_parameters

    assert len(named_parameters(model)) == 2
