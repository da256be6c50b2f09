"""A non-finite loss or gradient skips the step without touching the optimizer, scheduler
or weights; `train.max_bad_steps` in a row stop the run with the rows named."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from contrastkit.errors import ContrastkitError
from contrastkit.events import Callback
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.nonfinite import BadStepGuard, NonFiniteError
from helpers.train_toys import toy_engine, toy_train_config


def _poison(engine, bad_batches: set[int], key: str = "x_a") -> None:
    """Batches whose 0-based position in the run is in `bad_batches` get NaN in `key`;
    every batch gets row ids `b<batch>-<row>`."""
    make, seen = engine.parts.make_loader, [0]

    def loader(epoch: int, start: int):
        for batch in make(epoch, start):
            if seen[0] in bad_batches:
                batch = {**batch, key: torch.full_like(batch[key], float("nan"))}
            batch["ids"] = [f"b{seen[0]}-{i}" for i in range(len(batch[key]))]
            seen[0] += 1
            yield batch

    engine.parts.make_loader = loader


class Snapshot(Callback):
    """Optimizer state, lr and weights as they are at BATCH_START of every step."""

    def __init__(self) -> None:
        self.at_start: list[dict] = []

    def on_batch_start(self, state) -> None:
        self.at_start.append(
            {
                "optimizer": copy.deepcopy(state.optimizer.state_dict()),
                "lr": state.optimizer.param_groups[0]["lr"],
                "params": {k: v.clone() for k, v in state.model.state_dict().items()},
            }
        )


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_nan_batch_skips_the_step_and_leaves_state_untouched(tmp_path) -> None:
    snap = Snapshot()
    engine = toy_engine(tmp_path, toy_train_config(epochs=1), dropout=0.0, callbacks=[snap])
    _poison(engine, {3})
    summary = engine.fit()
    # State seen at the start of batch 3 (poisoned) equals the state at the start of batch 4.
    assert _same(snap.at_start[3], snap.at_start[4])
    assert not _same(snap.at_start[2], snap.at_start[3])  # a good step does change it
    assert engine.state.step == 5 and summary["train/bad_steps"] == 1.0  # 6 batches, 1 skipped
    for v in engine.model.state_dict().values():
        assert torch.isfinite(v).all()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    (bad,) = [r for r in recs if "train/bad_step" in r]
    assert bad["step"] == 4 and bad["train/bad_step_ids"][:2] == ["b3-0", "b3-1"]
    assert bad["train/loss"] != bad["train/loss"]  # NaN logged as NaN
    assert [r["step"] for r in recs if "train/lr" in r] == [1, 2, 3, 4, 5]


def test_scheduler_position_does_not_advance_on_a_skipped_step(tmp_path) -> None:
    cfg = toy_train_config(epochs=1, warmup_steps=0, lr_schedule="linear")
    clean = toy_engine(tmp_path / "clean", cfg, dropout=0.0)
    clean.fit()
    skipped = toy_engine(tmp_path / "bad", cfg, dropout=0.0)
    _poison(skipped, {0})
    skipped.fit()
    lrs = {
        name: [json.loads(x).get("train/lr") for x in (tmp_path / name / "metrics.jsonl").open()]
        for name in ("clean", "bad")
    }
    # The schedule continues where it stood: step k of the skipped run has step k's lr.
    assert [x for x in lrs["bad"] if x is not None] == lrs["clean"][:5]


def test_nan_gradient_with_finite_loss_is_skipped(tmp_path) -> None:
    class NanGrad(Callback):
        def on_after_loss(self, state) -> None:
            if state.step == 1:
                state.model.towers["a"].encoder.weight.register_hook(
                    lambda g: torch.full_like(g, float("nan"))
                )

    engine = toy_engine(
        tmp_path, toy_train_config(epochs=1, max_bad_steps=2), callbacks=[NanGrad()]
    )
    with pytest.raises(
        NonFiniteError, match="2 consecutive training steps had a non-finite gradient"
    ):
        engine.fit()
    assert engine.state.step == 1


def test_max_bad_steps_stops_naming_rows_and_keeps_the_checkpoint(tmp_path) -> None:
    cfg = toy_train_config(epochs=2, max_bad_steps=3)
    engine = toy_engine(tmp_path, cfg, dropout=0.0)
    _poison(engine, set(range(6, 100)), key="x_b")  # epoch 2 on is all NaN
    with pytest.raises(NonFiniteError) as err:
        engine.fit()
    assert isinstance(err.value, ContrastkitError)  # the CLI prints it and exits 2
    assert "3 consecutive" in str(err.value) and "b8-0, b8-1" in str(err.value)
    assert "train.max_bad_steps=3" in str(err.value)
    last = ckpt_dir.latest_checkpoint(tmp_path / "checkpoints")
    assert last.name == "step_000006"  # the end of the good epoch, intact
    tensors, _ = ckpt_files.load_checkpoint(last)
    assert all(torch.isfinite(v).all() for v in tensors.values() if v.is_floating_point())


def test_huge_learning_rate_stops_cleanly(tmp_path) -> None:
    engine = toy_engine(tmp_path, toy_train_config(lr=1e30, grad_clip=None, max_bad_steps=2))
    with pytest.raises(NonFiniteError, match="non-finite"):
        engine.fit()


def test_guard_counts_consecutive_and_resets() -> None:
    guard = BadStepGuard(3)
    guard.bad(step=1, loss=float("nan"), ids=["a"])
    guard.bad(step=2, loss=float("nan"), ids=["b"])
    guard.good()
    guard.bad(step=4, loss=float("inf"), ids=[])
    assert (guard.consecutive, guard.total) == (1, 3)
    restored = BadStepGuard(3)
    restored.load_state_dict(guard.state_dict())
    assert (restored.consecutive, restored.total) == (1, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 GradScaler needs CUDA")
def test_fp16_nan_loss_leaves_the_grad_scaler_untouched(tmp_path) -> None:
    from contrastkit.train.distributed import DistInfo

    class Scale(Callback):
        def __init__(self) -> None:
            self.at_start: list[dict] = []

        def on_batch_start(self, state) -> None:
            self.at_start.append(copy.deepcopy(engine.scaler.state_dict()))

    scale = Scale()
    cfg = toy_train_config(epochs=1, amp="fp16", device="cuda")
    engine = toy_engine(
        tmp_path, cfg, callbacks=[scale], dist=DistInfo(device=torch.device("cuda"))
    )
    _poison(engine, {2})
    engine.fit()  # a later step after the skipped one still unscales: no "already unscaled"
    assert scale.at_start[2] == scale.at_start[3]
    assert engine.state.step == 5 and engine.guard.total == 1
