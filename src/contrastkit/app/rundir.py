"""The run directory: who may write into it, and when.

Three rules keep a finished run safe from a later command:

1. `check_run_dir` runs before anything is written. It refuses a path that is a file, a
   directory another live training holds, and a non-empty directory unless the user said
   `--resume` (continue it) or `--overwrite` (move it aside to `<dir>.old-<time>`).
2. `RunLock` makes one training per directory: `<dir>/.lock` holds the pid and host of the
   training that owns it, is created exclusively and removed on exit (also on errors). A
   lock whose pid is dead on this host is stale (the owner was killed) and is taken over
   with a warning; a lock from another host cannot be checked and is an error.
3. Writes start only after the config and data are validated (`app/run.py`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from contrastkit.errors import RunDirError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negatives address process groups, never one training
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; beyond any pid
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def read_lock(run_dir: Path) -> dict | None:
    """The lock's owner `{pid, host, since}`, or None when unlocked or damaged.

    A damaged lock (not JSON, not an object, a pid that is not a positive integer, a host that is
    not a string) was not written by `RunLock`, whose writes are one `json.dump` of ints
    and strings, so no live training can be behind it: it counts as stale.
    """
    try:
        owner = json.loads((run_dir / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(owner, dict):
        return None
    pid, host = owner.get("pid"), owner.get("host")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0 or not isinstance(host, str):
        return None
    return owner


def _live_owner(run_dir: Path) -> dict | None:
    """The lock's owner if it may still be running; None when unlocked or stale."""
    owner = read_lock(run_dir)
    if owner is None:
        return None
    if owner["host"] == socket.gethostname() and not _pid_alive(owner["pid"]):
        return None
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        return None
    return owner


def _in_use(run_dir: Path, owner: dict) -> RunDirError:
    return RunDirError(
        f"run directory {run_dir} is in use by another training (pid {owner.get('pid')} on host "
        f"{owner.get('host')}, since {owner.get('since')}). Wait for it, stop it, or use another "
        f"--run-dir; if you are sure it is dead, delete {run_dir / LOCK_FILE}."
    )


def check_run_dir(run_dir: Path, *, resume: str | None, overwrite: bool) -> None:
    """Refuse run directories that would mix or damage runs (writes nothing).

    Raises:
        RunDirError: `run_dir` is a file, is locked by a live training, or holds a run and
            neither `resume` nor `overwrite` is given (or both are).
    """
    if resume and overwrite:
        raise RunDirError("give --resume or --overwrite, not both")
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a directory; pick another path")
    if not run_dir.is_dir():
        return
    owner = _live_owner(run_dir)
    if owner is not None:
        raise _in_use(run_dir, owner)
    entries = [p.name for p in run_dir.iterdir() if p.name != LOCK_FILE]
    if entries and not resume and not overwrite:
        raise RunDirError(
            f"run directory {run_dir} already holds a run ({', '.join(sorted(entries)[:6])}); "
            "pass --resume auto to continue it, --overwrite to move it aside and start again, "
            "or choose another --run-dir"
        )
    if entries and resume:
        check_run_files(run_dir)


# Files a resumed run reads back or rewrites, and folders it writes into; each must be of
# its kind and readable and writable before anything is written (see `check_run_files`).
RUN_FILES = (
    "config.yaml",
    "run.json",
    "metrics.jsonl",
    "signals.jsonl",
    "summary.json",
    "findings.json",
    "data_findings.json",
    "at_start.json",
    "model_spec.json",
)
RUN_FOLDERS = ("checkpoints", "tokenizer")


def check_run_files(run_dir: Path) -> None:
    """Refuse to resume a run whose files are not files (or folders not folders), or that
    this user cannot read and write: resuming would fail halfway, after the first write.

    Raises:
        RunDirError: naming the first such path.
    """
    for name in (*RUN_FILES, *RUN_FOLDERS):
        path = run_dir / name
        if not path.exists():
            continue
        kind_ok = path.is_dir() if name in RUN_FOLDERS else path.is_file()
        if not kind_ok:
            want = "a folder" if name in RUN_FOLDERS else "a file"
            raise RunDirError(
                f"--resume: {path} is not {want}; the run folder is damaged. Restore it, or "
                "train into a new --run-dir"
            )
        if not os.access(path, os.R_OK | os.W_OK):
            raise RunDirError(
                f"--resume: {path} cannot be read and written by this user; fix its "
                "permissions, or train into a new --run-dir"
            )


def move_aside(run_dir: Path) -> Path | None:
    """Rename a non-empty `run_dir` to `<run_dir>.old-<YYYYmmdd-HHMMSS>` (for `--overwrite`)."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
        n += 1
    try:
        run_dir.rename(target)
    except OSError as err:
        raise RunDirError(f"--overwrite: cannot move {run_dir} aside to {target}: {err}") from err
    log.warning("--overwrite: moved the previous run %s to %s", run_dir, target)
    return target


class RunLock:
    """`with RunLock(run_dir):` one training per run directory (see the module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self) -> None:
        """Take the lock, taking over a stale one.

        Raises:
            RunDirError: another live training holds it.
        """
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%c")}
        for _ in range(2):  # second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _live_owner(self.path.parent)
                if owner is not None:
                    raise _in_use(self.path.parent, owner) from None
                log.warning(
                    "taking over the stale lock %s (%s): its training is no longer running",
                    self.path,
                    read_lock(self.path.parent),
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise _in_use(self.path.parent, read_lock(self.path.parent) or {})

    def release(self) -> None:
        """Remove the lock if this process still owns it."""
        if not self.held:
            return
        owner = read_lock(self.path.parent)
        if owner is not None and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
