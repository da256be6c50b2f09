"""Content keys: what rows are compared by, a media file's hash or a normalised text.

Two rows with the same key in one column hold the same content, whatever their ids.
"""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.manifest import PATH_COLUMNS, is_text_column

_PUNCT = str.maketrans("", "", string.punctuation)
_SPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace: "A dog." == "a  dog"."""
    return _SPACE.sub(" ", str(text).lower().translate(_PUNCT)).strip()


def _hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _hash_path(path: Path, cache: dict[Path, str]) -> str:
    """Hash of the file's bytes (decoded array bytes for .npy, so headers do not matter)."""
    if path in cache:
        return cache[path]
    if not path.is_file():
        key = "path:" + str(path)
    elif path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
        key = _hash_bytes(str((arr.shape, arr.dtype.str)).encode() + arr.tobytes())
    else:
        key = _hash_bytes(path.read_bytes())
    cache[path] = key
    return key


def content_keys(row: Any, cache: dict[Path, str]) -> list[tuple[str, str]]:
    """(column, key) per content column of a row: media hash or normalised text."""
    keys = []
    for column, value in row.values.items():
        if value is None or not (is_text_column(column) or column in PATH_COLUMNS):
            continue
        if is_text_column(column):
            norm = normalise_text(value)
            if norm:
                keys.append((column, "text:" + norm))
        elif column in getattr(row, "paths", {}):
            paths = row.paths[column]
            paths = paths if isinstance(paths, tuple) else (paths,)
            keys.append((column, "+".join(_hash_path(Path(p), cache) for p in paths)))
        elif isinstance(value, list | tuple | np.ndarray):
            keys.append((column, _hash_bytes(np.asarray(value, dtype=np.float64).tobytes())))
        elif isinstance(value, str):
            keys.append((column, "path:" + value))
    return keys
