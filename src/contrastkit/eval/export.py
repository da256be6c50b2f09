"""Write and read embeddings: `.npy` (+ `<stem>.ids.txt`) or `.parquet` (id, embedding)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import ConfigError, DataError

SUFFIXES = (".npy", ".parquet")


def _ids_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.ids.txt")


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"embedding file {path}: suffix must be one of {SUFFIXES}")
    return suffix


def export_embeddings(path: str | Path, ids: list[str], embeddings: Tensor) -> Path:
    """Save embeddings with their ids; the format follows the suffix.

    `.npy`: a float32 N x D array, ids one per line in `<stem>.ids.txt` beside it.
    `.parquet`: columns `id` (string) and `embedding` (list<float32>), via pyarrow.
    """
    path = Path(path)
    suffix = _check_suffix(path)
    if len(ids) != len(embeddings):
        raise DataError(f"export: {len(ids)} ids for {len(embeddings)} embeddings")
    if any("\n" in i for i in ids):
        raise DataError("export: ids must not contain newlines")
    array = embeddings.detach().cpu().float().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, array)
        _ids_path(path).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        column = pa.FixedSizeListArray.from_arrays(pa.array(array.reshape(-1)), array.shape[1])
        table = pa.table(
            {"id": pa.array(ids, pa.string()), "embedding": column.cast(pa.list_(pa.float32()))}
        )
        pq.write_table(table, path)
    return path


def load_embeddings(path: str | Path) -> tuple[list[str], Tensor]:
    """Read what `export_embeddings` wrote: (ids, N x D float32 tensor)."""
    path = Path(path)
    suffix = _check_suffix(path)
    if not path.is_file():
        raise DataError(f"embedding file {path} does not exist")
    if suffix == ".npy":
        ids_file = _ids_path(path)
        if not ids_file.is_file():
            raise DataError(f"embedding file {path}: the ids file {ids_file} is missing")
        array = np.load(path)
        ids = ids_file.read_text(encoding="utf-8").splitlines()
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        ids = [str(i) for i in table.column("id").to_pylist()]
        values = table.column("embedding").to_pylist()
        array = np.asarray(values, dtype=np.float32).reshape(len(ids), -1)
    if len(ids) != len(array):
        raise DataError(f"embedding file {path}: {len(ids)} ids for {len(array)} rows")
    return ids, torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
