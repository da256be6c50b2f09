"""The engine loop on toy components: events, logging, phases, AMP, early stopping."""

from __future__ import annotations

import inspect
import json

import pytest
import torch

from contrastkit.config import Phase
from contrastkit.errors import ConfigError
from contrastkit.events import Callback, Event
from helpers.train_toys import toy_engine, toy_train_config


class Recorder(Callback):
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.phase_msgs: list[int] = []

    def __getattribute__(self, name: str):
        if name.startswith("on_"):
            return lambda state: object.__getattribute__(self, "seen").append(name[3:])
        return object.__getattribute__(self, name)


def test_callback_methods_match_events() -> None:
    methods = {
        n[3:] for n, _ in inspect.getmembers(Callback, inspect.isfunction) if n.startswith("on_")
    }
    assert methods == {e.value for e in Event}


def test_fit_fires_events_in_documented_order(tmp_path) -> None:
    rec = Recorder()
    cfg = toy_train_config(epochs=1)
    engine = toy_engine(tmp_path, cfg, callbacks=[rec], n=16, batch=8)
    summary = engine.fit()
    step = ["batch_start", "after_forward", "after_loss", "after_backward", "batch_end"]
    assert rec.seen == [
        "fit_start",
        "epoch_start",
        *step,
        *step,
        "eval_end",
        "epoch_end",
        "fit_end",
    ]
    assert summary["train/steps"] == 2


def test_metrics_jsonl_has_terms_lr_and_grad_norm(tmp_path) -> None:
    engine = toy_engine(tmp_path, toy_train_config(epochs=1, log_every=2), n=32, batch=8)
    engine.fit()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if "train/loss" in x]
    assert [x["step"] for x in train] == [2, 4]
    row = train[0]
    for key in (
        "train/lr",
        "train/grad_norm",
        "train/contrastive",
        "train/classification_weighted",
        "train/contrastive/logit_scale",
        "train/samples_per_s",
        "epoch",
        "phase",
    ):
        assert key in row, key
    assert row["train/classification_weighted"] == pytest.approx(0.2 * row["train/classification"])
    assert row["train/loss"] == pytest.approx(
        row["train/contrastive"] + row["train/classification_weighted"], rel=1e-5
    )
    assert any("val/a_to_b/R@1" in x for x in lines)


def test_accumulated_steps_log_cached_terms(tmp_path) -> None:
    rec = Recorder()
    engine = toy_engine(
        tmp_path, toy_train_config(epochs=1, accumulate=4), callbacks=[rec], n=16, batch=8
    )
    engine.fit()
    # cached: one AFTER_FORWARD per replayed micro-batch, one AFTER_LOSS per step
    first_step = rec.seen[rec.seen.index("batch_start") : rec.seen.index("batch_end") + 1]
    assert first_step.count("after_forward") == 4 and first_step.count("after_loss") == 1


def test_phases_freeze_then_unfreeze_and_fire(tmp_path) -> None:
    changes = []

    class Watch(Callback):
        def on_batch_start(self, state) -> None:
            changes.append((state.step, state.phase, state.model.classifier.weight.requires_grad))

        def on_phase_change(self, state) -> None:
            changes.append(("change", state.phase_name))

    phases = [
        Phase(until_step=2, freeze=["classifier"], weights={"classification": 0.0}, name="warm"),
        Phase(unfreeze=["classifier"], lr_scale=0.5),
    ]
    cfg = toy_train_config(epochs=1, phases=phases, freeze=["towers.b.encoder"])
    engine = toy_engine(tmp_path, cfg, callbacks=[Watch()], n=32, batch=8)
    before = engine.model.classifier.weight.detach().clone()
    b_before = engine.model.towers["b"].encoder.weight.detach().clone()
    engine.fit()
    assert changes[:3] == [(0, 0, False), (1, 0, False), ("change", "2")]
    assert changes[3] == (2, 1, True)
    assert not torch.equal(before, engine.model.classifier.weight)
    assert torch.equal(
        b_before, engine.model.towers["b"].encoder.weight
    )  # train.freeze holds all run


def test_unknown_freeze_prefix_names_key_path(tmp_path) -> None:
    cfg = toy_train_config(phases=[Phase(freeze=["classifer_head"])])
    with pytest.raises(
        ConfigError,
        match=r"train\.phases\.0\.freeze\.0: .classifer_head. matches no module; top-level modules: classifier, logit_scale, towers",
    ):
        toy_engine(tmp_path, cfg)


def test_bf16_autocast_runs_on_cpu(tmp_path) -> None:
    engine = toy_engine(
        tmp_path, toy_train_config(epochs=1, amp="bf16", accumulate=2), n=16, batch=8
    )
    summary = engine.fit()
    assert summary["train/steps"] == 2 and torch.isfinite(torch.tensor(summary["train/loss"]))


def test_early_stopping_and_best_pointer(tmp_path) -> None:
    from contrastkit.config import EarlyStoppingConfig

    cfg = toy_train_config(
        epochs=20,
        lr=1e-9,
        warmup_steps=0,
        early_stopping=EarlyStoppingConfig(patience=2, min_delta=0.5),
    )
    engine = toy_engine(tmp_path, cfg, n=16, batch=8)
    summary = engine.fit()
    assert summary["train/steps"] == 6  # 3 evaluations: first sets best, two without improvement
    best = json.loads((tmp_path / "checkpoints" / "best.json").read_text())
    assert (
        best["checkpoint"] == "step_000002" and (tmp_path / "checkpoints" / "step_000002").is_dir()
    )


def test_user_monitor_missing_from_eval_is_config_error(tmp_path) -> None:
    engine = toy_engine(
        tmp_path, toy_train_config(epochs=1, select_metric="val/x_to_y/R@1"), n=16, batch=8
    )
    with pytest.raises(
        ConfigError,
        match=r"train.select_metric: 'val/x_to_y/R@1' is not among the eval metrics: val/a_to_b/R@1",
    ):
        engine.fit()
