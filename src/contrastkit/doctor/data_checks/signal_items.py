"""Input signal, item by item: what a file stores and what the model sees of it.

Each sampled row is read twice. Once through the dataset's own path (`ManifestDataset`,
with the run's read options: decode, resize, crop to `max_length`, normalise), which is
what the model sees; pixels are brought to the model's float form (`normalise_pixels`,
values in [-1, 1]). Once as stored (the .npy array, or the decoded picture before any
resize), which keeps the dtype and the value range that say how the file was written. A
file holding NaN / Inf is measured from its stored values only: the loader refuses it.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastkit.data.dataset import ManifestDataset
from contrastkit.data.images import IMAGE_SUFFIXES, decode_picture
from contrastkit.data.media import MediaError, ReadOptions
from contrastkit.data.npy_files import load_npy
from contrastkit.doctor.data_checks.content import content_keys
from contrastkit.errors import DataError
from contrastkit.pixels import PIXEL_COLUMNS, normalise_pixels

ARRAY_COLUMNS = ("sequence", "features")
SIGNAL_COLUMNS = (*PIXEL_COLUMNS, *ARRAY_COLUMNS)
# Pixels reach the model as (x - 0.5) / 0.5, x in [0, 1]: a value range 2 wide.
PIXEL_RANGE = 2.0


@dataclass(frozen=True)
class ItemSignal:
    """One sampled item of one column.

    Attributes:
        row: the manifest row (id, line, group, split).
        column: the input column.
        dtype: the stored dtype ("uint8", "float32"; None when only the decoded form is known).
        stored_min: smallest finite stored value (None when unknown).
        stored_max: largest finite stored value.
        nonfinite: number of NaN / Inf stored values.
        seen_std: std of what the model sees as a share of the value range (pixels only:
            arrays have no fixed range, so they are judged by `constant`); None otherwise.
        constant: every value the model sees is the same.
        seen_key: hash of what the model sees (None if unreadable).
        stored_key: the content key the duplicate check compares (file hash, array bytes).
    """

    row: Any
    column: str
    dtype: str | None
    stored_min: float | None
    stored_max: float | None
    nonfinite: int
    seen_std: float | None
    constant: bool
    seen_key: str | None
    stored_key: str = ""

    @property
    def readable(self) -> bool:
        """The loader could read the item (no NaN / Inf, a decodable file)."""
        return self.seen_key is not None


def sample_rows(rows: list[Any], limit: int, seed: int) -> list[Any]:
    """Up to `limit` rows, a seeded random choice kept in file order."""
    if len(rows) <= limit:
        return list(rows)
    picked = sorted(random.Random(seed).sample(range(len(rows)), limit))
    return [rows[i] for i in picked]


def _stored(row: Any, column: str) -> np.ndarray | None:
    """The values as the file stores them: a .npy array, or a decoded picture before any
    resize; None where the stored form is not one array (a clip, a frame folder)."""
    path = row.paths.get(column)
    if not isinstance(path, Path):
        return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return load_npy(path)
        if column == "image" and suffix in IMAGE_SUFFIXES:
            return decode_picture(path)
    except MediaError:
        return None
    return None


def _hash(t: torch.Tensor) -> str:
    data = str((tuple(t.shape), str(t.dtype))).encode() + t.contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _measure(row: Any, column: str, seen: torch.Tensor | None, stored_key: str) -> ItemSignal:
    stored = _stored(row, column)
    dtype = lo = hi = None
    nonfinite = 0
    if stored is not None and stored.dtype.kind in "biuf" and stored.size:
        dtype = str(stored.dtype)
        finite = stored[np.isfinite(stored)] if stored.dtype.kind == "f" else stored
        nonfinite = int(stored.size - finite.size)
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
    if seen is None or nonfinite:
        return ItemSignal(row, column, dtype, lo, hi, nonfinite, None, False, None, stored_key)
    values = normalise_pixels(seen).float() if column in PIXEL_COLUMNS else seen.float()
    constant = bool(values.max() == values.min())
    std = float(values.std(unbiased=False)) / PIXEL_RANGE if column in PIXEL_COLUMNS else None
    return ItemSignal(
        row, column, dtype, lo, hi, nonfinite, std, constant, _hash(values), stored_key
    )


def measure_split(
    rows: list[Any], opts: ReadOptions, manifest: str, limit: int, seed: int
) -> list[ItemSignal]:
    """Measure every input column of a seeded sample of one split's rows.

    Args:
        rows: the split's rows (`Row`: id, group, split, values, line, paths).
        opts: the run's read options (sizes, channels, frames, max length).
        manifest: the manifest path, for the loader's messages.
        limit: rows sampled at most.
        seed: the sample's seed.

    Returns:
        One `ItemSignal` per (sampled row, input column it has).
    """
    # Media columns hold paths; a row whose media is not a file (a hand-built row with an
    # inline array) has nothing for the loader to read.
    rows = [r for r in rows if all(c in r.paths for c in SIGNAL_COLUMNS if c in r.values)]
    sample = sample_rows(rows, limit, seed)
    columns = [c for c in SIGNAL_COLUMNS if any(c in r.values for r in sample)]
    if not columns:
        return []
    groups = {g: i for i, g in enumerate(sorted({r.group for r in sample}))}
    labels = {str(r.values["label"]).strip() for r in sample if "label" in r.values}
    dataset = ManifestDataset(
        sample, opts, groups, {x: i for i, x in enumerate(sorted(labels))}, manifest
    )
    out = []
    cache: dict[Path, str] = {}
    for i, row in enumerate(sample):
        keys = dict(content_keys(row, cache))
        try:
            item = dataset[i]  # the loader's own decode, resize and normalisation
        except (DataError, MediaError):
            item = {}
        for column in columns:
            if column in row.values:
                out.append(_measure(row, column, item.get(column), keys.get(column, "")))
    return out
