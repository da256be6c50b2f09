"""One checkpoint folder: one `.safetensors` of tensors + one JSON of everything else,
written atomically, read back only when complete.

Layout: `checkpoints/step_000123/{tensors.safetensors, state.json}` and `checkpoints/best.json`
(a pointer to the best checkpoint by the monitored metric; see `folder.py`). A
checkpoint is first written to a hidden temporary folder, its files and the folder are fsynced,
the JSON (whose `"complete": true` is the last thing written) closes it, and only then is the
folder renamed into place: a crash leaves either the old set of checkpoints or the new one,
never a half one under a `step_*` name. `--resume auto` still validates every candidate,
newest first.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from contrastkit.errors import RunDirError
from contrastkit.run_io import read_json

TENSORS = "tensors.safetensors"
META = "state.json"
PREFIX = "step_"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tensors(path: Path, tensors: Mapping[str, Tensor]) -> None:
    # Clones break storage sharing (tied weights), which safetensors refuses.
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(path))
    with path.open("rb") as f:
        os.fsync(f.fileno())


def _write_meta(path: Path, meta: Mapping[str, Any]) -> None:
    text = json.dumps({**meta, "complete": True}, indent=1)
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_name(step: int) -> str:
    """The folder name of the checkpoint at `step` (zero-padded so names sort by step)."""
    return f"{PREFIX}{step:06d}"


def save_checkpoint(
    root: Path, step: int, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> Path:
    """Write `root/step_<step>` atomically (replacing one of the same step) and return it."""
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_tensors(tmp / TENSORS, tensors)
        _write_meta(tmp / META, meta)
        _fsync_dir(tmp)
    except (OSError, SafetensorError) as err:
        shutil.rmtree(tmp, ignore_errors=True)  # give the space back; older checkpoints stay
        raise RunDirError(
            f"could not write checkpoint {final} ({err}); the disk is full, read-only or over "
            f"a file-size limit. The previous checkpoints in {root} are intact: free space and "
            "run again with --resume auto"
        ) from err
    old = root / f".old-{final.name}-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    _fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_meta(path: Path) -> dict[str, Any] | None:
    """The checkpoint's JSON if the checkpoint is complete and its tensor file opens, else None."""
    try:
        meta = read_json(path / META)  # an object, or RunDirError
        with safe_open(str(path / TENSORS), framework="pt") as f:
            f.keys()
    except (OSError, ValueError, RuntimeError, Exception):  # noqa: BLE001 - any damage = invalid
        return None
    return meta if meta.get("complete") is True else None


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, meta) of a checkpoint folder.

    Raises:
        RunDirError: the folder is not a complete checkpoint.
    """
    meta = read_meta(path)
    if meta is None:
        raise RunDirError(
            f"{path} is not a complete checkpoint (needs {TENSORS} and {META} with complete: true)"
        )
    return load_file(str(path / TENSORS)), meta
