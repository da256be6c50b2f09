"""The `checkpoints/` folder: which checkpoints it holds, which is the newest valid one,
the `best.json` pointer, pruning, and resolving `best` / `last` / `auto` / a path to a folder.

What one checkpoint folder holds and how it is written is `files.py`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from contrastkit.errors import RunDirError
from contrastkit.run_io import read_json
from contrastkit.train.checkpoint.files import PREFIX, read_meta

log = logging.getLogger(__name__)

BEST = "best.json"


def list_checkpoints(root: Path) -> list[Path]:
    """`step_*` folders under `root`, oldest first (by step number)."""
    if not root.is_dir():
        return []
    dirs = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit()
    ]
    return sorted(dirs, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest valid checkpoint (skipping damaged or incomplete ones), or None."""
    for path in reversed(list_checkpoints(root)):
        if read_meta(path) is not None:
            return path
        log.warning("skipping incomplete or damaged checkpoint %s", path)
    return None


def auto_resume_checkpoint(root: Path) -> Path | None:
    """What `--resume auto` loads: the newest valid checkpoint, None when there is none at all.

    Raises:
        RunDirError: checkpoints exist but every one is damaged (restarting from step 0
            would silently throw the run away).
    """
    found = latest_checkpoint(root)
    candidates = list_checkpoints(root)
    if found is None and candidates:
        names = ", ".join(p.name for p in candidates)
        raise RunDirError(
            f"--resume auto: every checkpoint under {root} is damaged or incomplete ({names}); "
            "refusing to restart from step 0 over them. Move the run directory aside (or pass "
            "--overwrite) to start again."
        )
    return found


def set_best(root: Path, path: Path, metric: str, value: float, step: int) -> None:
    """Point `best.json` at `path` (atomic replace)."""
    tmp = root / f".{BEST}.tmp"
    tmp.write_text(
        json.dumps({"checkpoint": path.name, "metric": metric, "value": value, "step": step})
    )
    os.replace(tmp, root / BEST)


def best_checkpoint(root: Path) -> Path | None:
    """The checkpoint `best.json` points at, if `best.json` and that checkpoint are valid."""
    try:
        path = root / read_json(root / BEST)["checkpoint"]
    except (RunDirError, KeyError, TypeError):
        return None
    return path if read_meta(path) is not None else None


def prune(root: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints, sparing the best one."""
    best = best_checkpoint(root)
    for path in list_checkpoints(root)[:-keep_last]:
        if best is None or path.name != best.name:
            shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)


def resolve_checkpoint(run_dir: Path, which: str | Path = "best") -> Path:
    """`best` (falls back to last), `last`/`auto`, or an explicit folder.

    Raises:
        RunDirError: with what was looked for.
    """
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    if str(which) not in ("best", "last", "auto"):
        path = Path(which)
        if not path.exists():
            raise RunDirError(
                f"no checkpoint {path}: give best, last, auto or a checkpoint folder "
                f"(run_dir/checkpoints/step_NNNNNN)"
            )
        if read_meta(path) is None:
            raise RunDirError(f"checkpoint {path} is incomplete or damaged")
        return path
    if not run_dir.is_dir():
        raise RunDirError(f"run directory {run_dir} does not exist")
    found = best_checkpoint(root) if which == "best" else None
    if which == "best" and found is None and (root / BEST).exists():
        log.warning(
            "%s is damaged or points at a damaged checkpoint; using the newest "
            "valid checkpoint instead of the best one",
            root / BEST,
        )
    found = found or latest_checkpoint(root)
    if found is None:
        raise RunDirError(
            f"run directory {run_dir} holds no complete checkpoint under checkpoints/"
        )
    return found
