"""Run-directory rules: refuse to mix runs, move aside on --overwrite, one lock per directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from contrastkit.app.rundir import LOCK_FILE, RunLock, check_run_dir, move_aside, read_lock
from contrastkit.errors import RunDirError


def _finished(path):
    path.mkdir()
    (path / "config.yaml").write_text("name: old\n")
    return path


def test_missing_or_empty_dir_is_fine(tmp_path) -> None:
    check_run_dir(tmp_path / "new", resume=None, overwrite=False)
    (tmp_path / "empty").mkdir()
    check_run_dir(tmp_path / "empty", resume=None, overwrite=False)


def test_non_empty_dir_needs_resume_or_overwrite(tmp_path) -> None:
    run = _finished(tmp_path / "run")
    with pytest.raises(RunDirError, match=r"already holds a run \(config.yaml\).*--resume auto"):
        check_run_dir(run, resume=None, overwrite=False)
    check_run_dir(run, resume="auto", overwrite=False)
    check_run_dir(run, resume=None, overwrite=True)
    with pytest.raises(RunDirError, match="not both"):
        check_run_dir(run, resume="auto", overwrite=True)


def test_run_dir_that_is_a_file(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        check_run_dir(tmp_path / "f", resume="auto", overwrite=False)


def test_move_aside_keeps_the_old_run(tmp_path) -> None:
    run = _finished(tmp_path / "run")
    moved = move_aside(run)
    assert not run.exists() and moved.name.startswith("run.old-")
    assert (moved / "config.yaml").read_text() == "name: old\n"
    assert move_aside(tmp_path / "nothing") is None


def test_lock_taken_and_released_also_on_errors(tmp_path) -> None:
    with pytest.raises(ValueError), RunLock(tmp_path):
        owner = read_lock(tmp_path)
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        raise ValueError("boom")
    assert not (tmp_path / LOCK_FILE).exists()


def test_live_lock_refuses_a_second_training(tmp_path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": other.pid, "host": socket.gethostname(), "since": "now"}
        (tmp_path / LOCK_FILE).write_text(json.dumps(lock))
        with pytest.raises(RunDirError, match=f"in use by another training \\(pid {other.pid}"):
            RunLock(tmp_path).acquire()
        with pytest.raises(RunDirError, match="in use"):
            check_run_dir(tmp_path, resume="auto", overwrite=False)
    finally:
        other.kill()
        other.wait()
    # Now the owner is dead: a stale lock, taken over with a warning.
    with RunLock(tmp_path) as taken:
        assert taken.held and read_lock(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_lock_of_another_host_is_not_taken_over(tmp_path) -> None:
    lock = {"pid": 1, "host": "some-other-host", "since": "now"}
    (tmp_path / LOCK_FILE).write_text(json.dumps(lock))
    with pytest.raises(RunDirError, match="host some-other-host"):
        RunLock(tmp_path).acquire()
