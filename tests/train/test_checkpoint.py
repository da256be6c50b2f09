"""Atomic checkpoints, resume auto, keep-last-N and exact kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from contrastkit.errors import RunDirError
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.checkpoint import state_tensors
from helpers.train_toys import script_run, toy_engine, toy_train_config

TESTS = Path(__file__).parents[1]
TOYS = TESTS / "helpers" / "train_toys.py"


def _save(root: Path, step: int, value: float) -> Path:
    return ckpt_files.save_checkpoint(root, step, {"w": torch.full((3,), value)}, {"step": step})


def test_roundtrip_and_complete_marker(tmp_path) -> None:
    path = _save(tmp_path, 5, 1.5)
    tensors, meta = ckpt_files.load_checkpoint(path)
    assert path.name == "step_000005" and meta == {"step": 5, "complete": True}
    assert torch.equal(tensors["w"], torch.full((3,), 1.5))


def test_crash_mid_write_leaves_previous_checkpoint(tmp_path, monkeypatch) -> None:
    _save(tmp_path, 1, 1.0)

    def crash(path, meta):
        raise OSError("disk yanked")

    monkeypatch.setattr(ckpt_files, "_write_meta", crash)
    with pytest.raises(RunDirError, match="disk yanked.*previous checkpoints .* are intact"):
        _save(tmp_path, 2, 2.0)
    assert ckpt_dir.latest_checkpoint(tmp_path).name == "step_000001"
    assert not list(tmp_path.glob(".tmp-*"))  # the half-written folder is removed
    # A step folder damaged some other way (no marker, truncated tensors) is skipped too.
    bad = tmp_path / "step_000003"
    bad.mkdir()
    (bad / ckpt_files.TENSORS).write_bytes(b"\x00" * 10)
    (bad / ckpt_files.META).write_text(json.dumps({"step": 3}))
    assert ckpt_dir.latest_checkpoint(tmp_path).name == "step_000001"


def test_keep_last_spares_best(tmp_path) -> None:
    for step in range(1, 6):
        path = _save(tmp_path, step, float(step))
        if step == 2:
            ckpt_dir.set_best(tmp_path, path, "val/x", 0.9, step)
        ckpt_dir.prune(tmp_path, keep_last=2)
    assert [p.name for p in ckpt_dir.list_checkpoints(tmp_path)] == [
        "step_000002",
        "step_000004",
        "step_000005",
    ]
    with pytest.raises(RunDirError, match="does not exist"):
        ckpt_dir.resolve_checkpoint(tmp_path / "missing_run", "best")


def test_optimizer_state_roundtrip(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = state_tensors.optimizer_tensors(opt)
    path = ckpt_files.save_checkpoint(tmp_path, 1, tensors, {"optimizer": meta})
    loaded, meta2 = ckpt_files.load_checkpoint(path)
    opt2 = torch.optim.AdamW(model.parameters(), lr=0.1)
    state_tensors.load_optimizer(opt2, loaded, meta2["optimizer"])
    for a, b in zip(opt.state.values(), opt2.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_in_process_resume_equals_uninterrupted(tmp_path) -> None:
    cfg = toy_train_config(epochs=2, accumulate=2, checkpoint={"every_steps": 3, "keep_last": 5})
    full = toy_engine(tmp_path / "full", cfg, n=32, batch=8)
    full.fit()
    # Resume from the mid-epoch checkpoint at step 3 (epoch 0, batch 3 of 4).
    part = tmp_path / "part"
    part.mkdir()
    src = tmp_path / "full" / "checkpoints"
    (part / "checkpoints").mkdir()
    os.rename(src / "step_000003", part / "checkpoints" / "step_000003")
    resumed = toy_engine(part, cfg, n=32, batch=8)
    resumed.fit(resume="auto")
    for (name, a), b in zip(
        full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_sigkill_and_resume_auto_matches_uninterrupted(tmp_path) -> None:
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    proc = subprocess.Popen([sys.executable, str(TOYS), str(run), "slow"], env=env)
    try:
        while True:  # kill once a mid-run checkpoint exists
            assert proc.poll() is None, "run finished before it could be killed"
            found = ckpt_dir.latest_checkpoint(run / "checkpoints")
            if found is not None and int(found.name.split("_")[1]) >= 8:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert not (run / "final.json").exists()
    script_run(run, resume=True)  # resumed in this process; the killed run was a real one
    got = json.loads((run / "final.json").read_text())
    want = json.loads(json.dumps(script_run(tmp_path / "clean")))
    assert got["params"] == want["params"]
    assert got["summary"]["train/loss"] == want["summary"]["train/loss"]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and len(set(steps)) >= 18  # no duplicated steps after resume


def test_every_minutes_checkpoints_by_elapsed_time(tmp_path, monkeypatch) -> None:
    import contrastkit.train.checkpoint.schedule as checkpointing

    clock = iter(range(0, 10_000, 50))  # each call: 50 s later
    monkeypatch.setattr(checkpointing.time, "monotonic", lambda: float(next(clock)))
    cfg = toy_train_config(epochs=1, checkpoint={"every_minutes": 2.0, "keep_last": 10})
    toy_engine(tmp_path, cfg).fit()
    names = [p.name for p in ckpt_dir.list_checkpoints(tmp_path / "checkpoints")]
    # One monotonic() call per step check (50 s apart), reset at every save: every 3rd step
    # has 150 s >= 120 s since the last save; the epoch's end saves step 6.
    assert names == ["step_000003", "step_000006"]
