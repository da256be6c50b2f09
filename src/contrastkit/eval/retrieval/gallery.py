"""Exact retrieval metrics against a gallery too big for memory, streamed from disk.

`retrieval_metrics` holds both sides in memory (sorted by group); at 1M x 256 float32 a
gallery alone is 1 GB, and its sorted copy another. Here the queries stay in memory and
the gallery is read block by block from a `.npy` file with positioned reads (no mmap, so
the process's resident memory stays at the queries plus one block, whatever the gallery
size), twice:

1. **Positive scores.** Only the blocks holding some query's group are read; each
   query's positive scores come from its tile's own matmul and are sorted, best first:
   the thresholds.
2. **Negatives.** Every block is read; per query chunk x block tile, the query's
   positives are masked to -inf and `_count_ge` counts the scores reaching each
   threshold. The same tile shapes as in pass 1 give the same bits, so a positive's
   threshold is exactly the score it has (ties stay pessimistic, as in `ranking.py`).

The k-th best positive's rank is (negatives reaching it) + k, and `summarise_ranks`
turns ranks into the same metrics `retrieval_metrics` reports for the query -> gallery
direction (the reverse direction would rank a million gallery items as queries).
Cost: two matmuls of Q x N x D (pass 1 only over blocks with positives); memory:
Q x (D + positives) plus block x D and chunk x tile floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.errors import DataError
from contrastkit.eval.retrieval.match_groups import _dense_groups
from contrastkit.eval.retrieval.rank_metrics import summarise_ranks
from contrastkit.eval.retrieval.ranking import PositiveRanks, _ranks_from_counts
from contrastkit.eval.retrieval.threshold_counts import TILE_ELEMENTS, _count_ge

# Gallery rows read per block: 16 MiB at D = 256 float32, large enough that the reads are
# sequential and the per-block Python overhead is negligible.
BLOCK_ROWS = 16384


class NpyRows:
    """Row ranges of a 2-D C-order `.npy` file, read with positioned reads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with self.path.open("rb") as f:
                version = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, self.dtype = read(f)
                self.offset = f.tell()
        except (OSError, ValueError) as err:
            raise DataError(f"gallery {self.path}: cannot read it as .npy: {err}") from None
        if len(shape) != 2 or fortran:
            raise DataError(f"gallery {self.path}: need a C-order N x D array, got {shape}")
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0]

    def rows(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows start:stop, read into `out` (reused across blocks) when given."""
        d = self.shape[1]
        buffer = np.empty((stop - start, d), self.dtype) if out is None else out[: stop - start]
        with self.path.open("rb") as f:
            f.seek(self.offset + start * d * self.dtype.itemsize)
            # numpy's stubs give ndarray the buffer protocol on Python >= 3.12 only.
            view = memoryview(buffer).cast("B")  # type: ignore[arg-type]
            if f.readinto(view) != buffer.nbytes:
                raise DataError(f"gallery {self.path}: file ends before row {stop}")
        return buffer


def _blocks(gallery: NpyRows | np.ndarray | Tensor, rows: int):
    """(start, float32 block) over the gallery; a float32 file is read into one reused
    buffer (the block must not outlive the next step of the loop)."""
    buffer = (
        np.empty((rows, gallery.shape[1]), np.float32) if isinstance(gallery, NpyRows) else None
    )
    for start in range(0, len(gallery), rows):
        stop = min(start + rows, len(gallery))
        if isinstance(gallery, NpyRows) and gallery.dtype == np.float32:
            yield start, torch.from_numpy(gallery.rows(start, stop, buffer))
            continue
        rows_ = gallery.rows(start, stop) if isinstance(gallery, NpyRows) else gallery[start:stop]
        block = rows_ if isinstance(rows_, Tensor) else torch.from_numpy(np.array(rows_))
        yield start, block.float()


def _tiles(queries: Tensor, block: Tensor, chunk: int):
    """(q0, q1, b0, b1, scores) tiles of queries x block rows, about TILE_ELEMENTS each."""
    width = max(64, TILE_ELEMENTS // chunk)
    for q0 in range(0, len(queries), chunk):
        q1 = min(q0 + chunk, len(queries))
        for b0 in range(0, len(block), width):
            b1 = min(b0 + width, len(block))
            yield q0, q1, b0, b1, queries[q0:q1] @ block[b0:b1].T


def gallery_retrieval_metrics(
    queries: Tensor,
    gallery: str | Path | np.ndarray | Tensor,
    groups_queries: Sequence | Tensor,
    groups_gallery: Sequence | Tensor | np.ndarray,
    *,
    ks: Sequence[int] = (1, 5, 10, 50),
    chunk_size: int = 1024,
    block_rows: int = BLOCK_ROWS,
) -> dict[str, float]:
    """Query -> gallery retrieval metrics (`summarise_ranks`), the gallery streamed.

    Args:
        queries: Q x D embeddings (L2-normalised for cosine), in memory.
        gallery: a `.npy` path (streamed), or an N x D array / memmap / tensor.
        groups_queries, groups_gallery: match group per row; same group = positive.
        chunk_size: query rows per tile.
        block_rows: gallery rows read at once.
    """
    reader = NpyRows(gallery) if isinstance(gallery, str | Path) else gallery
    n, q = len(reader), len(queries)
    if len(groups_gallery) != n or len(groups_queries) != q:
        raise DataError("gallery retrieval: one group id per query and per gallery row")
    queries = queries.detach().float().cpu()
    gq, gg = _dense_groups(groups_queries, torch.as_tensor(np.asarray(groups_gallery)))
    counts = torch.bincount(gg, minlength=int(max(gq.max(), gg.max())) + 1)
    npos = counts[gq]
    k = int(npos.max())
    if k == 0:
        raise DataError("gallery retrieval: no query has a positive in the gallery")
    wanted = torch.zeros(len(counts), dtype=torch.bool)
    wanted[gq] = True

    # Pass 1: every positive's score, from the tile it lives in. They are written into
    # tensors sized up front: keeping a small tensor per tile alive pins the heap under
    # the tiles' temporaries (measured +0.4 GB at Q = 100 over 1M rows).
    owner = torch.empty(int(npos.sum()), dtype=torch.int64)
    value = torch.empty(len(owner))
    filled = 0
    for start, block in _blocks(reader, block_rows):
        if not wanted[gg[start : start + len(block)]].any():
            continue
        for q0, q1, b0, b1, tile in _tiles(queries, block, chunk_size):
            mask = gq[q0:q1, None] == gg[start + b0 : start + b1][None, :]
            rows, cols = mask.nonzero(as_tuple=True)
            owner[filled : filled + len(rows)] = rows + q0
            value[filled : filled + len(rows)] = tile[rows, cols]
            filled += len(rows)
    order = torch.sort(value, descending=True, stable=True).indices
    owner, value = owner[order], value[order]
    order = torch.sort(owner, stable=True).indices  # by query, best score first within
    owner, value = owner[order], value[order]
    first = torch.searchsorted(owner, torch.arange(q))
    slot = torch.arange(len(owner)) - first[owner]
    thresholds = torch.full((k, q), math.inf)  # +inf: fewer than k positives (never reached)
    thresholds[slot, owner] = value

    # Pass 2: negatives reaching each threshold (positives masked out of every tile).
    negatives = torch.zeros(k, q, dtype=torch.int32)
    for start, block in _blocks(reader, block_rows):
        has_pos = bool(wanted[gg[start : start + len(block)]].any())
        for q0, q1, b0, b1, tile in _tiles(queries, block, chunk_size):
            if has_pos:
                mask = gq[q0:q1, None] == gg[start + b0 : start + b1][None, :]
                tile = tile.masked_fill(mask, -math.inf)
            _count_ge(tile, thresholds[:, q0:q1], 1, negatives[:, q0:q1])
    ranks = _ranks_from_counts(negatives.T.to(torch.int64), npos)
    return summarise_ranks(PositiveRanks(ranks, npos), ks)
