"""`ManifestDataset`: manifest rows -> sample dicts, plus up-front row validation.

Rows are validated when the bundle is built (`validate_rows`): files exist, .npy headers
have the right rank, images decode, feature and attribute sizes agree across rows. Under
`on_error: raise` the first bad row raises; under `skip` it is removed and reported.

A row that still fails when it is read during training (a file deleted or corrupted
after validation, a bad frame deep inside an .mp4) raises under `raise`; under `skip` the
dataset returns the next readable row of the split instead (i+1, i+2, ... wrapping
round) and warns once per row, so a batch keeps its size and every sample carries its own
id and group — no sample is ever mislabelled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from contrastkit.data.arrays import (
    check_features,
    check_sequence,
    features_shape,
    read_features,
    read_sequence,
)
from contrastkit.data.images import check_image, read_image
from contrastkit.data.manifest import Row, SkippedRow, is_text_column, row_error
from contrastkit.data.media import MediaError, ReadOptions
from contrastkit.data.video import check_video, read_video
from contrastkit.errors import DataError


def _check_row(
    row: Row,
    opts: ReadOptions,
    sizes: dict[str, tuple[int, int]],
    required: set[str],
    notes: dict[str, list[tuple[Row, str]]],
) -> tuple[str, str] | None:
    """(column, reason) of the first problem in a row, or None. `sizes` tracks the first
    row's feature / attribute width (value, line) so later rows are compared with it;
    `notes` collects (row, note) per column for float pixels far outside [0, 1]."""
    for column in sorted(required - set(row.values)):
        return (
            column,
            "value is missing, but other rows have this column (a batch needs it in every row)",
        )
    for column, value in row.values.items():
        try:
            if is_text_column(column):
                if not isinstance(value, str) or not value.strip():
                    return column, "text is empty"
            elif column in ("image", "video"):
                note = (
                    check_image(row.paths["image"])  # type: ignore[arg-type]
                    if column == "image"
                    else check_video(row.paths["video"], opts.max_views)
                )
                if note is not None:
                    notes.setdefault(column, []).append((row, note))
            elif column == "sequence":
                check_sequence(row.paths["sequence"])  # type: ignore[arg-type]
            elif column in ("features", "attributes"):
                width = (
                    check_features(row.paths["features"])[-1]  # type: ignore[arg-type]
                    if column == "features"
                    else len(value)
                )
                first = sizes.setdefault(column, (width, row.line))
                if width != first[0]:
                    return column, (
                        f"{column} have size {width} but row {first[1]} has {first[0]}; "
                        "every row needs the same size"
                    )
        except MediaError as err:
            return column, str(err)
    return None


def validate_rows(
    rows: list[Row], opts: ReadOptions, manifest: str | Path, on_error: Literal["raise", "skip"]
) -> tuple[list[Row], list[SkippedRow]]:
    """Check every row's media up front; raise on the first bad row or drop and report it.

    Every row must have every input column that some row of `rows` has (only `label` may
    be missing: it becomes -1).
    """
    good: list[Row] = []
    skipped: list[SkippedRow] = []
    sizes: dict[str, tuple[int, int]] = {}
    notes: dict[str, list[tuple[Row, str]]] = {}
    required = {c for r in rows for c in r.values if _known(c) and c != "label"}
    for row in rows:
        problem = _check_row(row, opts, sizes, required, notes)
        if problem is None:
            good.append(row)
        elif on_error == "raise":
            raise row_error(manifest, row.line, *problem)
        else:
            skipped.append(SkippedRow(str(manifest), row.line, row.id, *problem))
    for column, found in notes.items():  # one warning per column, naming the first file
        row, note = found[0]
        warnings.warn(
            f"{manifest}: {len(found)} row(s) of column {column!r} hold float pixels far "
            f"outside [0, 1], e.g. row {row.line}: {row.paths[column]} ({note}). Float "
            "pixels are taken as already in [0, 1] and clamped, so these come out nearly "
            "white or black; divide by 255 (or the maximum) or save them as integers.",
            stacklevel=2,
        )
    return good, skipped


class ManifestDataset(Dataset):
    """One split of a manifest.

    Args:
        rows: the split's rows (already validated).
        opts: reader options (sizes, frames, views, max length).
        group_index: group name -> integer id, over the whole manifest (all splits).
        label_index: label name -> class index; rows without a label get -1.
        manifest_path: used in error messages.
        on_error: "raise" or "skip" (see the module docstring for read-time failures).
    """

    def __init__(
        self,
        rows: list[Row],
        opts: ReadOptions,
        group_index: dict[str, int],
        label_index: dict[str, int],
        manifest_path: str | Path,
        on_error: Literal["raise", "skip"] = "raise",
    ) -> None:
        self.rows = list(rows)
        self.opts = opts
        self.label_index = dict(label_index)
        self.manifest_path = str(manifest_path)
        self.on_error = on_error
        self.group_ids = np.array([group_index[r.group] for r in self.rows], dtype=np.int64)
        self.columns: set[str] = {c for r in self.rows for c in r.values if _known(c)}
        if self.label_index:
            self.columns.add("label")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self.on_error == "raise" or not self.rows:
            return self._read(i)
        for step in range(len(self.rows)):
            j = (i + step) % len(self.rows)
            try:
                return self._read(j)
            except DataError as err:
                warnings.warn(f"skipping unreadable row (read time): {err}", stacklevel=2)
        raise DataError(f"{self.manifest_path}: no row of this split is readable")

    def _read(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        sample: dict[str, Any] = {"index": i, "id": row.id, "group_id": int(self.group_ids[i])}
        for column, value in row.values.items():
            if not _known(column):
                continue
            try:
                sample.update(self._read_column(row, column, value))
            except MediaError as err:
                raise row_error(self.manifest_path, row.line, column, str(err)) from None
        if self.label_index:
            sample.setdefault("label", -1)
        return sample

    def _read_column(self, row: Row, column: str, value: Any) -> dict[str, Any]:
        o = self.opts
        if is_text_column(column):
            if not value.strip():
                raise MediaError("text is empty")
            return {column: value}
        if column == "image":
            path = row.paths["image"]
            # 8-bit pictures stay uint8 until the model (contrastkit.pixels).
            return {"image": read_image(path, o.image_size, o.image_channels, uint8=True)}  # type: ignore[arg-type]
        if column == "video":
            video, mask = read_video(row.paths["video"], o)
            return {"video": video} if mask is None else {"video": video, "video_view_mask": mask}
        if column == "sequence":
            return {"sequence": read_sequence(row.paths["sequence"], o.max_length)}  # type: ignore[arg-type]
        if column == "features":
            return {"features": read_features(row.paths["features"])}  # type: ignore[arg-type]
        if column == "label":
            return {"label": self.label_index[str(value).strip()]}
        if column == "attributes":
            return {"attributes": torch.tensor(value, dtype=torch.float32)}
        return {}

    def texts(self, column: str = "text") -> list[str]:
        """The raw text of every row ("" where the row has none), in row order."""
        return [str(r.values.get(column, "")) for r in self.rows]

    def input_specs(self) -> dict[str, tuple[int, ...]]:
        """Shape of one sample per input column, read from the first row that has it.

        Text columns are `()`; `sequence` reports T = `max_length` (the padded maximum);
        `features` reports the largest N over the rows x F (N may vary per row; F is
        checked to agree), read from file headers, so position tables fit every row.
        """
        specs: dict[str, tuple[int, ...]] = {}
        for column in sorted(self.columns - {"label"}):
            if is_text_column(column):
                specs[column] = ()
                continue
            first = next(i for i, r in enumerate(self.rows) if column in r.values)
            shape = tuple(self._read(first)[column].shape)
            specs[column] = (self.opts.max_length, *shape[1:]) if column == "sequence" else shape
            if column == "features" and len(shape) == 2:
                most = max(
                    # A features column holds one path (tuples are a video's views).
                    features_shape(Path(r.paths[column]))[0]  # type: ignore[arg-type]
                    for r in self.rows
                    if column in r.paths
                )
                specs[column] = (max(most, shape[0]), shape[1])
        return specs


def _known(column: str) -> bool:
    return is_text_column(column) or column in (
        "image",
        "video",
        "sequence",
        "features",
        "label",
        "attributes",
    )


@dataclass
class DatasetBundle:
    """Every split of one manifest, with the mappings shared by all splits.

    Attributes:
        splits: split name -> dataset.
        label_names: class index -> label (sorted; numerically when all are integers).
        group_names: group id -> group name (sorted, over the whole manifest).
        skipped: rows left out under `on_error: skip`, with the reason.
        manifest_path: the manifest read (a generated one for `builtin:NAME`).
        columns: the known columns present in the manifest.
    """

    splits: dict[str, ManifestDataset]
    label_names: list[str]
    group_names: list[str]
    skipped: list[SkippedRow] = field(default_factory=list)
    manifest_path: str = ""
    columns: set[str] = field(default_factory=set)
