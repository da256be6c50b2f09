"""Fault injection with real processes: kill -9 at chosen and random points, a full disk
(`ulimit -f`), a read-only run directory, two trainings in one directory, every checkpoint
damaged, and a NaN on one rank of two. Each ends as docs/reliability.md says.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from helpers import fault_driver
from helpers.tiny_digits import TINY

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parents[1]
DRIVER = TESTS / "helpers" / "fault_driver.py"
ENV = {**os.environ, "PYTHONPATH": str(TESTS)}  # same threads as here: same floats


# --------------------------------------------------------------------------- toy engine


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = fault_driver.run(run_dir)
    return result, fault_driver.losses(run_dir), fault_driver.evals(run_dir)


def _killed(run_dir: Path, point: str, n: int, *, resume: bool = False) -> int:
    args = [sys.executable, str(DRIVER), str(run_dir), point, str(n)]
    proc = subprocess.run([*args, *(["resume"] if resume else [])], env=ENV, capture_output=True)
    assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.decode()[-2000:]
    return proc.returncode


def _assert_same_as_reference(run_dir: Path, reference) -> None:
    want, want_losses, want_evals = reference
    got = fault_driver.run(run_dir, resume=True)
    assert got["params"] == want["params"]  # bit-identical, not approximately equal
    assert got["criterion"] == want["criterion"]
    assert fault_driver.losses(run_dir) == want_losses  # no torn, lost or repeated steps
    assert fault_driver.evals(run_dir) == want_evals  # each evaluation logged once


def test_kill_mid_checkpoint_write_then_resume_is_bit_identical(tmp_path, reference) -> None:
    run_dir = tmp_path / "run"
    assert _killed(run_dir, "mid_checkpoint", 3) == -signal.SIGKILL  # 3rd save = step 6
    (tmp,) = (run_dir / "checkpoints").glob(".tmp-step_000006-*")  # the torn one, hidden
    assert ckpt_files.read_meta(tmp) is None
    assert ckpt_dir.latest_checkpoint(run_dir / "checkpoints").name == "step_000004"
    _assert_same_as_reference(run_dir, reference)


def test_kill_mid_metrics_line_then_resume_is_bit_identical(tmp_path, reference) -> None:
    run_dir = tmp_path / "run"
    assert _killed(run_dir, "mid_metrics", 7) == -signal.SIGKILL
    last = (run_dir / "metrics.jsonl").read_text().splitlines()[-1]
    with pytest.raises(json.JSONDecodeError):
        json.loads(last)  # a torn half line, as a full disk or a kill leaves it
    _assert_same_as_reference(run_dir, reference)


def test_kill_during_final_evaluation_leaves_a_checkpoint(tmp_path, reference) -> None:
    run_dir = tmp_path / "run"
    assert _killed(run_dir, "during_eval", 3) == -signal.SIGKILL  # the last epoch's eval
    last = ckpt_dir.latest_checkpoint(run_dir / "checkpoints")
    assert last.name == f"step_{fault_driver.STEPS:06d}"
    assert ckpt_files.read_meta(last)["eval_pending"] is True
    _assert_same_as_reference(run_dir, reference)  # the resume redoes that evaluation once


def test_random_kills_then_resume_is_bit_identical(tmp_path, reference) -> None:
    rng = random.Random(20261201)
    run_dir = tmp_path / "run"
    for attempt in range(3):
        point = rng.choice(fault_driver.POINTS)
        n = rng.randint(1, fault_driver.STEPS) if point == "at_step" else rng.randint(1, 4)
        if _killed(run_dir, point, n, resume=attempt > 0) == 0:
            break  # the run finished before reaching the kill point
    _assert_same_as_reference(run_dir, reference)


# --------------------------------------------------------------------------- NaN on one rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poisoned_run(rank: int, world: int, out: str, bad_from: int, bad_to: int) -> dict:
    """Rank 1's batches bad_from..bad_to-1 (0-based, whole run) carry NaN inputs."""
    from contrastkit.errors import ContrastkitError
    from contrastkit.train.distributed import DistInfo
    from helpers.train_toys import toy_engine, toy_train_config

    cfg = toy_train_config(epochs=2, max_bad_steps=3)
    engine = toy_engine(f"{out}/run", cfg, dropout=0.0, n=32, batch=8, dist=DistInfo(rank, world))
    make, seen = engine.parts.make_loader, [0]

    def poisoned(epoch: int, start: int):
        for batch in make(epoch, start):
            if rank == 1 and bad_from <= seen[0] < bad_to:
                batch = {**batch, "x_a": torch.full_like(batch["x_a"], float("nan"))}
            batch["ids"] = [f"r{rank}-{seen[0]}-{i}" for i in range(len(batch["x_a"]))]
            seen[0] += 1
            yield batch

    engine.parts.make_loader = poisoned
    result: dict = {"error": None}
    try:
        engine.fit()
    except ContrastkitError as err:
        result["error"] = str(err)
    result["step"] = engine.state.step
    result["bad"] = engine.guard.total
    result["params"] = {k: v.tolist() for k, v in engine.model.state_dict().items()}
    return result


def nan_worker(rank: int, world: int, port: int, out: str) -> None:
    """Two runs on two gloo ranks: one NaN batch on rank 1; then NaN on rank 1 for good."""
    import torch.distributed as tdist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        once = _poisoned_run(rank, world, f"{out}/once", 2, 3)
        always = _poisoned_run(rank, world, f"{out}/always", 2, 99)
    finally:
        tdist.destroy_process_group()
    Path(f"{out}/rank{rank}.json").write_text(json.dumps({"once": once, "always": always}))


@pytest.mark.dist
def test_nan_on_one_rank_is_skipped_on_every_rank(tmp_path) -> None:
    mp.spawn(nan_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    r0, r1 = (r["once"] for r in ranks)
    assert r0["error"] is None and r1["error"] is None
    assert r0["bad"] == r1["bad"] == 1  # rank 0's own loss was finite; it skipped too
    assert r0["step"] == r1["step"] == 2 * 4 - 1  # 8 batches, one step skipped
    assert r0["params"] == r1["params"]  # replicas still identical
    for values in r0["params"].values():
        assert torch.isfinite(torch.tensor(values)).all()
    lines = (tmp_path / "once" / "run" / "metrics.jsonl").read_text().splitlines()
    (rec,) = [r for r in map(json.loads, lines) if "train/bad_step" in r]
    assert rec["step"] == 3  # the step it would have been
    assert {"r0-2-0", "r1-2-0"} <= set(rec["train/bad_step_ids"])  # both ranks' rows
    # NaN on rank 1 for max_bad_steps (3) batches in a row: every rank stops, same message.
    r0, r1 = (r["always"] for r in ranks)
    for r in (r0, r1):
        assert "3 consecutive training steps had a non-finite loss" in r["error"]
        assert "r1-4-0" in r["error"] and r["step"] == 2  # stopped after batches 2, 3, 4
    assert r0["params"] == r1["params"]


# --------------------------------------------------------------------------- the CLI


def _cli(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "contrastkit", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        **kw,
    )


def _train(cwd: Path, run_dir: Path, *extra: str, **kw) -> subprocess.CompletedProcess:
    return _cli(["train", str(cwd / "tiny.yaml"), "--run-dir", str(run_dir), *extra], cwd, **kw)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A finished tiny run (6 steps, checkpoints at 3 and 6); copy it before damaging it."""
    cwd = tmp_path_factory.mktemp("cli")
    (cwd / "tiny.yaml").write_text(TINY)
    proc = _train(cwd, cwd / "base")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "base"


def _copy(base_run: Path, tmp_path: Path) -> Path:
    (tmp_path / "tiny.yaml").write_text(TINY)
    return Path(shutil.copytree(base_run, tmp_path / "run"))


def _flat(text: str) -> str:
    """`text` with rich's line wrapping undone."""
    return " ".join(text.split())


def _no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "error: " in proc.stderr


def test_full_disk_keeps_the_previous_checkpoints(base_run, tmp_path) -> None:
    run_dir = _copy(base_run, tmp_path)
    limit = 64 * 1024  # bytes per file: the config fits, a checkpoint's tensors do not

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = _train(
        tmp_path, run_dir, "--resume", "auto", "-o", "train.epochs=3", preexec_fn=small_files
    )
    _no_traceback(proc)
    assert "could not write checkpoint" in _flat(proc.stderr) and "intact" in proc.stderr
    root = run_dir / "checkpoints"
    assert ckpt_dir.latest_checkpoint(root).name == "step_000006"
    assert not list(root.glob(".tmp-*"))  # the half-written one was removed


def _read_only_dir(path: Path):
    """A read-only directory: a read-only tmpfs as root (root ignores chmod), else chmod."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)])
    if mounted.returncode != 0:
        pytest.skip("root without mount permission: cannot make a read-only directory")
    return lambda: subprocess.run(["umount", str(path)], check=True)


def test_read_only_run_dir_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    undo = _read_only_dir(tmp_path / "ro")
    try:
        proc = _train(tmp_path, tmp_path / "ro")
    finally:
        undo()
    _no_traceback(proc)
    assert "Read-only file system" in _flat(proc.stderr) or "Permission denied" in proc.stderr


def test_second_training_in_one_directory_is_refused_then_stale_lock_taken_over(tmp_path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "contrastkit", "train", "tiny.yaml", "--run-dir", str(run_dir),
         "-o", "train.epochs=500"],
        cwd=tmp_path, env=ENV, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        while not ckpt_dir.list_checkpoints(run_dir / "checkpoints"):
            assert first.poll() is None, first.stderr.read().decode()[-3000:]
            time.sleep(0.1)
        second = _train(tmp_path, run_dir, "--resume", "auto", "-o", "train.epochs=500")
        assert first.poll() is None  # the first one is still training, undisturbed
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    _no_traceback(second)
    assert f"in use by another training (pid {first.pid}" in _flat(second.stderr)
    # The killed training's lock is stale: the next resume takes it over and finishes.
    third = _train(
        tmp_path, run_dir, "--resume", "auto", "-o", "train.epochs=500", "-o", "train.max_steps=1"
    )
    assert third.returncode == 0, third.stderr[-3000:]
    assert "taking over the stale lock" in _flat(third.stderr)
    assert not (run_dir / ".lock").exists()


def test_every_checkpoint_damaged_stops_resume_auto(base_run, tmp_path) -> None:
    run_dir = _copy(base_run, tmp_path)
    for path in ckpt_dir.list_checkpoints(run_dir / "checkpoints"):
        (path / ckpt_files.TENSORS).write_bytes(b"\0" * 16)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    proc = _train(tmp_path, run_dir, "--resume", "auto")
    _no_traceback(proc)
    assert "every checkpoint" in _flat(proc.stderr)
    assert "step_000003, step_000006" in _flat(proc.stderr)
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before  # nothing restarted, nothing appended
