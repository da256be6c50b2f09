"""The watcher's per-step path: off-cadence steps skip the monitors (the overhead fix),
without changing a record, and several `observe` calls per optimizer step are read as
naive gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch
from bench.watcher import TwoTower, clip_loss, digits_views

from contrastkit.doctor.hosts.watcher import Watcher


class _EveryStep(Watcher):
    """Fires every event on every step, as the engine does."""

    def _cadence(self, step: int) -> bool:
        return True


def _loop(tmp_path, cls=Watcher, *, steps=12, every=4, micro=1, rows=16, nan_at=(), lr=1e-2):
    torch.manual_seed(0)
    x, noisy, _ = digits_views()
    model = TwoTower()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    watcher = cls(
        model, opt, run_dir=tmp_path, batch_size=rows, towers=("image", "view"), every=every
    )
    watcher.state.is_main = False  # records are what is checked, no files
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        opt.zero_grad()
        for _ in range(micro):
            idx = torch.randint(0, x.shape[0], (rows,), generator=g)
            a, b = model(x[idx], noisy[idx])
            scale = model.logit_scale.exp()
            loss = clip_loss(a, b, scale)
            shown = loss * float("nan") if step in nan_at else loss
            watcher.observe(shown, embeddings=(a, b), logit_scale=scale)  # unscaled, per call
            (loss / micro).backward()
        opt.step()
    return watcher


def _strip(records):
    return [{k: v for k, v in r.items()} for r in records]


def test_skipping_off_cadence_events_changes_no_record(tmp_path):
    fast = _loop(tmp_path / "fast")
    full = _loop(tmp_path / "full", _EveryStep)
    assert _strip(fast.signals()) == _strip(full.signals())
    steps = sorted({r["step"] for r in fast.signals() if r["monitor"] == "loss"})
    assert steps == [0, 4, 8]


def test_a_nan_loss_off_the_cadence_is_still_counted(tmp_path):
    watcher = _loop(tmp_path, steps=12, every=4, nan_at=(5, 6))
    loss = {r["step"]: r for r in watcher.signals() if r["monitor"] == "loss"}
    # Steps 5 and 6 are off the cadence; the record of step 8 counts them.
    assert [loss[s]["nonfinite_steps"] for s in (0, 4, 8)] == [0, 0, 2]
    assert "loss_nan" in [f.code for f in watcher.diagnose()]


def test_several_observes_per_step_are_naive_accumulation(tmp_path):
    # 4 micro-batches of 8 rows per optimizer step: 7 negatives per query, not 31.
    watcher = _loop(tmp_path, steps=8, every=4, micro=4, rows=8)
    neg = [r for r in watcher.signals() if r["monitor"] == "negatives"]
    assert [r["step"] for r in neg] == [0, 4]
    # Step 0's record is taken after its four micro-batches were seen.
    assert neg[0]["negatives/contrastive_batch"] == 8
    assert neg[0]["negatives/mean"] == 7.0
    assert (neg[0]["accumulation"], neg[0]["accumulate"]) == ("naive", 4)
    cfg = watcher.config()
    assert (cfg.train.accumulate, cfg.train.accumulation, cfg.data.batch_size) == (4, "naive", 32)
    findings = {f.code: f for f in watcher.diagnose()}
    naive = findings["naive_accumulation_no_negatives"]
    assert naive.evidence["negatives_per_query"] == 7.0
    assert naive.evidence["negatives_with_cached"] == 31
    assert "too_few_negatives" in findings
    # The fix is in the plain loop's words: accumulation adds no negatives.
    assert "GradCache" in findings["too_few_negatives"].fix_note


def test_one_observe_per_step_is_not_accumulation(tmp_path):
    watcher = _loop(tmp_path, steps=8, every=4, rows=32)
    neg = [r for r in watcher.signals() if r["monitor"] == "negatives"]
    assert (neg[0]["accumulation"], neg[0]["accumulate"]) == ("naive", 1)
    assert neg[0]["negatives/contrastive_batch"] == 32
    codes = [f.code for f in watcher.diagnose()]
    assert "naive_accumulation_no_negatives" not in codes and "too_few_negatives" not in codes


def test_loss_at_chance_is_judged_at_the_micro_batch(tmp_path):
    # lr 0: the loss stays at ln(8) = 2.08 per micro-batch, far below ln(32) = 3.47.
    watcher = _loop(tmp_path, steps=8, every=2, micro=4, rows=8, lr=0.0)
    found = {f.code: f for f in watcher.diagnose()}
    if "loss_at_chance" not in found:
        pytest.fail(f"loss_at_chance missing: {sorted(found)}")
    assert found["loss_at_chance"].evidence["chance"] == pytest.approx(math.log(8), abs=1e-3)
