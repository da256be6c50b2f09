"""SIGTERM / SIGUSR1: a checkpoint after the current step, run.json `preempted`, exit
128 + signal, and `--resume auto` continues bit for bit (train/preemption.py)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from contrastkit.app.cli import main
from contrastkit.train.preemption import Preempted, PreemptionWatch, exit_code
from helpers.tiny_digits import TINY

TESTS = Path(__file__).parents[1]
DRIVER = TESTS / "helpers" / "preempt_driver.py"
ENV = {**os.environ, "PYTHONPATH": str(TESTS)}  # same threads as here: same floats
# 60 train rows in batches of 10: 6 steps per epoch, 12 in all; the signal comes at step 4.
SHORT = ["-o", "data.batch_size=10", "-o", "train.epochs=2"]


def test_watch_records_a_signal_instead_of_dying_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionWatch() as watch:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert watch.signum == signal.SIGUSR1
        assert watch.agreed(torch.device("cpu")) == signal.SIGUSR1  # no process group
    assert signal.getsignal(signal.SIGTERM) is before
    assert exit_code(signal.SIGTERM) == 143 and exit_code(signal.SIGUSR1) == 138


def _losses(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train/loss"]) for r in map(json.loads, lines) if "train/loss" in r]


@pytest.mark.slow
def test_sigterm_mid_epoch_then_resume_is_bit_identical(tmp_path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    config = str(tmp_path / "tiny.yaml")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(["train", config, "--run-dir", str(whole), *SHORT]) == 0
    args = ["train", config, "--run-dir", str(cut), *SHORT]
    done = subprocess.run(
        [sys.executable, str(DRIVER), "4", "TERM", *args],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 143, done.stderr
    assert "preempted by SIGTERM after step 4" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert json.loads((cut / "run.json").read_text())["status"] == "preempted"
    assert not (cut / ".lock").exists() and not (cut / "summary.json").exists()
    meta = json.loads((cut / "checkpoints" / "step_000004" / "state.json").read_text())
    assert (meta["epoch"], meta["batch_in_epoch"]) == (0, 4)  # mid-epoch
    assert main([*args, "--resume", "auto"]) == 0
    last = "checkpoints/step_000012/tensors.safetensors"
    assert (cut / last).read_bytes() == (whole / last).read_bytes()  # weights, optimizer, all
    assert _losses(cut) == _losses(whole) and len(_losses(whole)) == 12
    assert json.loads((cut / "run.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_an_outside_sigusr1_to_every_process_ends_the_run_with_a_checkpoint(tmp_path) -> None:
    """The signal from another process to the whole process group, loader workers included
    (as SLURM signals a job step), at a step not known in advance: the workers survive it
    and the checkpoint is the last logged step."""
    (tmp_path / "tiny.yaml").write_text(TINY)
    run = tmp_path / "run"
    args = ["train", str(tmp_path / "tiny.yaml"), "--run-dir", str(run)]
    cmd = [sys.executable, "-m", "contrastkit", *args, "-o", "data.batch_size=4",
           "-o", "data.num_workers=2", "-o", "data.persistent_workers=true"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (run / "metrics.jsonl").is_file() or not _losses(run):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGUSR1)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 138, err
    assert json.loads((run / "run.json").read_text())["status"] == "preempted"
    (ckpt,) = (run / "checkpoints").glob("step_*")
    assert int(ckpt.name.split("_")[1]) == _losses(run)[-1][0]
    assert not (run / ".lock").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def signal_worker(rank: int, world: int, port: int, out: str) -> None:
    """Two gloo ranks of the toy run; only rank 1 receives SIGTERM, during its 3rd batch."""
    import torch.distributed as tdist

    from contrastkit.train.distributed import DistInfo
    from helpers.train_toys import toy_engine, toy_train_config

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    engine = toy_engine(f"{out}/run", toy_train_config(epochs=2), n=32, batch=8,
                        dist=DistInfo(rank, world))  # fmt: skip
    make = engine.parts.make_loader

    def signalled(epoch: int, start: int):
        for i, batch in enumerate(make(epoch, start)):
            if rank == 1 and epoch == 0 and i == 2:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    engine.parts.make_loader = signalled
    result: dict = {"signal": None}
    try:
        engine.fit()
    except Preempted as stop:
        result["signal"] = stop.signum
    finally:
        tdist.destroy_process_group()
    result["step"] = engine.state.step
    result["params"] = {k: v.tolist() for k, v in engine.model.state_dict().items()}
    Path(f"{out}/rank{rank}.json").write_text(json.dumps(result))


@pytest.mark.dist
def test_a_signal_on_one_rank_stops_every_rank_after_the_same_step(tmp_path) -> None:
    mp.spawn(signal_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["signal"] == r1["signal"] == signal.SIGTERM  # rank 0 got no signal itself
    assert r0["step"] == r1["step"] == 3
    assert r0["params"] == r1["params"]
    assert [p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*")] == ["step_000003"]
