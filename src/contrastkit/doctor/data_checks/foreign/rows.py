"""`Source` rows -> the manifest `Row`s every data check reads.

A row's `group` is what the host treats as one class. open_clip's loss and
sentence-transformers' MultipleNegativesRankingLoss make every row its own class, so by
default each row is its own group (`groups="row"`); `groups="media"` gives rows with the
same media one group, as a contrastkit manifest would (group = the image path, or the
bytes' hash where the row holds bytes; for a text pair, rows with the same first text).
A text pair's second text is the column `text_<name>` (`text_anchor`), a text column as
every check knows it.

Media held as bytes (Parquet, datasets) are identified by their hash (`bytes:<hash>`, the
content key the duplicate check compares); only the rows the input-signal check samples
are written to files, so that the loader can read them as it reads any image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from contrastkit.data.manifest import EXTRA_TEXT_PREFIX, Row, row_error
from contrastkit.doctor.data_checks.content import normalise_text
from contrastkit.doctor.data_checks.foreign.sources import Source
from contrastkit.doctor.data_checks.signal_items import sample_rows

Groups = Literal["row", "media"]
BYTES_PREFIX = "bytes:"


def _bytes_key(data: bytes) -> str:
    return BYTES_PREFIX + hashlib.blake2b(data, digest_size=16).hexdigest()


def _resolve(file: Path, root: Path, src: Source) -> Path:
    path = Path(src.media or "").expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        hint = "" if path.parent.is_dir() else f" (set the image folder with --root; now {root})"
        raise row_error(file, src.line, "image", f"file not found: {path}{hint}")
    return path


def to_rows(
    file: Path, sources: list[Source], root: Path, groups: Groups, pair: str | None = None
) -> list[Row]:
    """Rows with ids `<split>:<line>` (or the format's own id), groups per `groups`.

    Raises:
        DataError: an image path that does not exist (naming the file, row and column).
    """
    rows = []
    for src in sources:
        values: dict[str, object] = {}
        paths: dict[str, Path | tuple[Path, ...]] = {}
        media_key = ""
        if src.data is not None:
            media_key = values["image"] = _bytes_key(src.data)
        elif src.media is not None:
            paths["image"] = _resolve(file, root, src)
            values["image"] = src.media
            media_key = str(paths["image"])
        if src.text is not None:
            values["text"] = src.text
        if pair is not None and src.pair is not None:
            values[EXTRA_TEXT_PREFIX + pair] = src.pair
            media_key = media_key or "pair:" + normalise_text(src.pair)
        row_id = f"{src.split}:{src.ref or src.line}"
        group = media_key if groups == "media" and media_key else row_id
        rows.append(Row(row_id, group, src.split, values, src.line, paths))
    return rows


def signal_sample(
    rows: list[Row], sources: list[Source], folder: Path, limit: int, seed: int
) -> list[Row]:
    """The rows the input-signal check reads, with bytes written to `folder` as files.

    The sample is the one `check_input_signal` takes (same limit and seed), so every
    sampled row can be read; rows with a path are returned as they are.
    """
    data = {r.id: s.data for r, s in zip(rows, sources, strict=True) if s.data is not None}
    picked = sample_rows(rows, limit, seed)
    out = []
    for r in picked:
        if r.id not in data:
            out.append(r)
            continue
        path = folder / f"{str(r.values['image']).removeprefix(BYTES_PREFIX)}.png"
        if not path.exists():
            path.write_bytes(data[r.id])  # PIL reads the format from the bytes, not the name
        out.append(Row(r.id, r.group, r.split, r.values, r.line, {**r.paths, "image": path}))
    return out
