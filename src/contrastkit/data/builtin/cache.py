"""Where builtin datasets live, and how they are generated safely.

A dataset is generated once into `<cache>/builtin/<name>-v<version>-<options hash>/` and
reused while that folder exists. Generation writes into a temporary sibling folder and
renames it into place, so an interrupted run never leaves a half-written dataset and two
processes generating at once both end up with one complete copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.jsonl"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`data.cache_dir`, else `$CONTRASTKIT_CACHE`, else `~/.cache/contrastkit`."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("CONTRASTKIT_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "contrastkit"


def dataset_dir(root: Path, name: str, version: int, options: dict[str, Any]) -> Path:
    """Folder name = name, version and a short hash of the (complete) options."""
    canonical = json.dumps(options, sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return root / "builtin" / f"{name}-v{version}-{digest}"


def generate_once(target: Path, generate: Callable[[Path], None]) -> Path:
    """Run `generate(tmp_dir)` unless `target` exists; atomically rename tmp -> target.

    Returns:
        The manifest path inside `target`.
    """
    manifest = target / MANIFEST_NAME
    if manifest.is_file():
        return manifest
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        generate(tmp)
        if not (tmp / MANIFEST_NAME).is_file():
            raise RuntimeError(f"builtin generator wrote no {MANIFEST_NAME} into {tmp}")
        try:
            os.rename(tmp, target)
        except OSError:
            if not manifest.is_file():  # not a lost race: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def write_manifest(folder: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as JSONL (one object per line, keys in insertion order)."""
    with (folder / MANIFEST_NAME).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
