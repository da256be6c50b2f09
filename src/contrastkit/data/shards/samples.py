"""Reading `contrastkit shard` tars: group samples -> rows -> decoded sample dicts.

A tar sample holds one match group (see `writer.py`). Reading yields `GroupRecord`s
(the rows' JSON plus the media bytes, undecoded); decoding a row turns it into the same
sample dict `ManifestDataset` returns, so `collate` and everything after it cannot tell a
streamed batch from a manifest batch. Images decode from memory (PIL, or .npy); other
media go through the path readers via a temporary file, since their decoders (PyAV,
pydicom, safetensors) want a file.

Errors name the shard and the sample key: an unreadable tar or `rows.json` is a
`DataError` always (the shard's layout is broken); a row whose media fails to decode
follows `data.on_error` (the caller substitutes another row of the batch under `skip`).
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contrastkit.data.arrays import read_features, read_sequence
from contrastkit.data.images import IMAGE_SUFFIXES, picture_tensor, pil_pixels
from contrastkit.data.manifest import Row, is_text_column
from contrastkit.data.media import MediaError, ReadOptions
from contrastkit.data.video import read_video
from contrastkit.errors import DataError

ROWS_MEMBER = "rows.json"


@dataclass(frozen=True)
class GroupRecord:
    """One tar sample: a match group's rows and their media bytes (member name -> bytes)."""

    shard: str
    key: str
    rows: list[dict[str, Any]]
    media: dict[str, bytes]


def read_groups(path: str | Path, *, rows_only: bool = False) -> Iterator[GroupRecord]:
    """The group samples of one shard, in file order.

    Args:
        rows_only: skip the media bytes (counting rows, collecting texts).

    Raises:
        DataError: naming the shard (and key) when the tar or a `rows.json` is unreadable.
    """
    from webdataset.tariterators import group_by_keys, tar_file_iterator

    path = str(path)
    keep = (lambda name: name.endswith("." + ROWS_MEMBER)) if rows_only else None
    try:
        with open(path, "rb") as f:
            files = ({**x, "__url__": path} for x in tar_file_iterator(f, select_files=keep))
            for sample in group_by_keys(files):
                key = sample["__key__"]
                if ROWS_MEMBER not in sample:
                    raise DataError(f"shard {path}, key {key!r}: no {ROWS_MEMBER} member")
                try:
                    rows = json.loads(sample[ROWS_MEMBER])
                except (UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise DataError(
                        f"shard {path}, key {key!r}: bad {ROWS_MEMBER}: {err}"
                    ) from None
                media = {k: v for k, v in sample.items() if not k.startswith("__")}
                media.pop(ROWS_MEMBER)
                yield GroupRecord(path, key, rows, media)
    except (OSError, tarfile.TarError, ValueError) as err:
        raise DataError(f"shard {path}: cannot read it as a tar: {err}") from None


def _image_from_bytes(name: str, data: bytes, opts: ReadOptions) -> torch.Tensor:
    suffix = Path(name).suffix.lower()
    if suffix == ".npy":
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.ndim not in (2, 3):
            raise MediaError(f"image array must be H x W or H x W x C, got shape {array.shape}")
    elif suffix in IMAGE_SUFFIXES:
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                array = pil_pixels(img, opts.image_size)  # as `read_image` decodes a file
        except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file
            raise MediaError(f"cannot decode image {name}: {err}") from None
    else:
        raise MediaError(f"unsupported image file {name}")
    return picture_tensor(array, opts.image_size, opts.image_channels, uint8=True)


def _via_file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def decode_row(
    group: GroupRecord, row: dict[str, Any], opts: ReadOptions, label_index: dict[str, int]
) -> dict[str, Any]:
    """One row of a group -> the sample dict `ManifestDataset` would return.

    Raises:
        DataError: naming shard, key, row id and column when a value cannot be decoded.
    """
    sample: dict[str, Any] = {
        "index": int(row["line"]),
        "id": row["id"],
        "group_id": int(row["group_id"]),
    }
    try:
        for column, value in row["values"].items():
            if is_text_column(column):
                sample[column] = value
            elif column == "label":
                sample["label"] = label_index[str(value).strip()]
            elif column == "attributes":
                sample["attributes"] = torch.tensor(value, dtype=torch.float32)
        media = row["media"]
        if "image" in media:  # decoded from memory: the hot path needs no temporary file
            sample.update(_decode_media("image", media["image"], group.media, opts, None))
        if set(media) - {"image"}:
            with tempfile.TemporaryDirectory(prefix="contrastkit-") as tmp:
                for column in sorted(set(media) - {"image"}):
                    sample.update(
                        _decode_media(column, media[column], group.media, opts, Path(tmp))
                    )
    except (MediaError, KeyError, ValueError, OSError) as err:
        raise DataError(
            f"shard {group.shard}, key {group.key!r}, row {row.get('id')!r}: {err}"
        ) from None
    if label_index:
        sample.setdefault("label", -1)
    return sample


def _decode_media(
    column: str,
    member: str | list[str],
    media: dict[str, bytes],
    opts: ReadOptions,
    tmp: Path | None,
) -> dict[str, Any]:
    names = member if isinstance(member, list) else [member]
    missing = [n for n in names if n not in media]
    if missing:
        raise MediaError(f"member {missing[0]!r} of column {column!r} is missing")
    if column == "image":
        return {"image": _image_from_bytes(names[0], media[names[0]], opts)}
    assert tmp is not None
    paths = [_via_file(tmp, n, media[n]) for n in names]
    if column == "video":
        views = tuple(paths) if isinstance(member, list) else paths[0]
        video, mask = read_video(views, opts)
        return {"video": video} if mask is None else {"video": video, "video_view_mask": mask}
    if column == "sequence":
        return {"sequence": read_sequence(paths[0], opts.max_length)}
    if column == "features":
        return {"features": read_features(paths[0])}
    raise MediaError(f"unknown media column {column!r}")


def extract_rows(groups: Iterator[GroupRecord], folder: Path) -> tuple[list[Row], dict[str, int]]:
    """Write the groups' media into `folder` and rebuild manifest `Row`s pointing at them.

    Evaluation splits are read this way: they are small and evaluation needs random
    access to rows (`ManifestDataset`), not a stream. Returns (rows, group name -> id).
    """
    rows: list[Row] = []
    group_index: dict[str, int] = {}
    for group in groups:
        for row in group.rows:
            values = dict(row["values"])
            paths: dict[str, Any] = {}
            for column, member in row["media"].items():
                names = member if isinstance(member, list) else [member]
                files = [_via_file(folder, f"{group.key}.{n}", group.media[n]) for n in names]
                paths[column] = tuple(files) if isinstance(member, list) else files[0]
                values[column] = (
                    [str(p) for p in files] if isinstance(member, list) else str(files[0])
                )
            group_index[row["group"]] = int(row["group_id"])
            rows.append(Row(row["id"], row["group"], row["split"], values, int(row["line"]), paths))
    return rows, group_index
