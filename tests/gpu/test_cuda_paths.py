"""The CUDA paths of training: AMP (bf16, and fp16 with the grad scaler), cached accumulation
replaying the CUDA RNG, exact resume, and the doctor's monitors on CUDA tensors.

Each test runs on `cpu` and on `cuda` (marked `gpu`; skipped without a device): the CPU run
checks the test, the CUDA run checks the device path."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from contrastkit.data.collate import to_device
from contrastkit.events import Callback
from contrastkit.train.accumulation import accumulation_step
from contrastkit.train.accumulation.context import StepContext, split_batch
from contrastkit.train.distributed import DistInfo
from contrastkit.train.engine import Engine

from .conftest import DEVICES, GPU, tiny_config, tiny_data, tiny_parts


class Losses(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_batch_end(self, state) -> None:
        self.values.append(state.metrics["train/loss"])


def _fit(device: str, run_dir, callbacks=(), resume=None, **train) -> Engine:
    cfg = tiny_config(device, **train)
    parts = tiny_parts(cfg, tiny_data(), batch=8, callbacks=callbacks)
    engine = Engine(cfg.train, parts, run_dir, dist=DistInfo(device=torch.device(device)))
    engine.fit(resume)
    return engine


@pytest.mark.parametrize(
    "device,amp",
    [
        pytest.param("cpu", "bf16", marks=pytest.mark.slow),
        pytest.param("cuda", "bf16", marks=GPU),
        pytest.param("cuda", "fp16", marks=GPU),
    ],
)
def test_amp_first_loss_matches_fp32_and_training_moves(tmp_path, device, amp) -> None:
    full, mixed = Losses(), Losses()
    _fit(device, tmp_path / "fp32", [full], max_steps=4)
    engine = _fit(device, tmp_path / amp, [mixed], max_steps=4, amp=amp)
    # bf16 keeps 8 bits of mantissa (~0.4%); the losses run in float32 (losses/precision.py)
    assert mixed.values[0] == pytest.approx(full.values[0], rel=2e-2)
    assert all(math.isfinite(v) for v in mixed.values) and len(mixed.values) == 4
    assert mixed.values[-1] < mixed.values[0]
    if amp == "fp16":
        assert engine.scaler is not None and math.isfinite(engine.scaler.get_scale())


def _grads(*modules) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{n}": torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for i, m in enumerate(modules)
        for n, p in m.named_parameters()
    }


@pytest.mark.parametrize("device", DEVICES)
def test_cached_accumulation_with_dropout_equals_full_batch(device) -> None:
    """Dropout draws from the device's RNG: the cached replay of each micro-batch must
    rewind it (CUDA's generator on a GPU), or the gradients are of other masks."""
    cfg = tiny_config(device)
    parts = tiny_parts(cfg, tiny_data(), batch=32)
    model, criterion = parts.model.to(device).train(), parts.criterion.to(device)
    batch = to_device(tiny_data(), torch.device(device))
    weights = parts.weights(0, 0)

    torch.manual_seed(7)  # reference: one graph over the micro-batches' forwards
    outs = [model(mb) for mb in split_batch(batch, 4)]
    emb = {t: torch.cat([o.embeddings[t] for o in outs]) for t in outs[0].embeddings}
    terms, _ = criterion.contrastive(emb, batch)
    sum(weights[k] * v for k, v in terms.items()).backward()
    want = _grads(model, criterion)

    results = {}
    for replay in (True, False):
        model.zero_grad(), criterion.zero_grad()
        torch.manual_seed(7)
        ctx = StepContext(replay_rng=replay)
        accumulation_step(model, criterion, batch, weights, ctx, accumulate=4, mode="cached")
        got = _grads(model, criterion)
        results[replay] = max((got[k] - want[k]).abs().max().item() for k in want)
    assert results[True] < 1e-5
    assert results[False] > 1e-3  # without the replay the check fails


@pytest.mark.parametrize("device", [pytest.param("cpu", marks=pytest.mark.slow), *DEVICES[1:]])
def test_resume_on_device_is_exact(tmp_path, device, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    train = {"epochs": 2, "checkpoint": {"every_steps": 3, "keep_last": 10}}
    full = _fit(device, tmp_path / "full", **train)
    (tmp_path / "part" / "checkpoints").mkdir(parents=True)
    os.rename(
        tmp_path / "full" / "checkpoints" / "step_000003",
        tmp_path / "part" / "checkpoints" / "step_000003",
    )
    resumed = _fit(device, tmp_path / "part", resume="auto", **train)
    assert resumed.state.step == full.state.step == 8
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("device", DEVICES)
def test_doctor_monitors_on_device_tensors(tmp_path, device) -> None:
    from contrastkit.doctor import build_monitors

    cfg = tiny_config(device, max_steps=4)
    engine = _fit(device, tmp_path, build_monitors(cfg), max_steps=4)
    lines = [json.loads(x) for x in (tmp_path / "signals.jsonl").read_text().splitlines()]
    steps = {r["step"] for r in lines if "step" in r}
    assert steps == {0, 1, 2, 3}  # the step each record was taken in (before the update)
    numbers = [v for r in lines for v in r.values() if isinstance(v, float)]
    assert numbers and all(math.isfinite(v) for v in numbers)
    assert engine.state.step == 4
