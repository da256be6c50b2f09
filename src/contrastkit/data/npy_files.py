"""NumPy .npy files for every reader: a full load, or the header alone (shape and dtype,
a few hundred bytes) for cheap up-front validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contrastkit.data.media import MediaError, require_file


def load_npy(path: Path) -> np.ndarray:
    """A .npy array (never pickled objects); a `MediaError` when it cannot be read."""
    require_file(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise MediaError(f"cannot read {path} as .npy: {err}") from None


_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header alone: a few hundred bytes, no data read."""
    require_file(path)
    try:
        with path.open("rb") as f:
            read = _NPY_HEADER_READERS.get(np.lib.format.read_magic(f))
            if read is None:  # a newer format version: let numpy parse it
                mapped = np.load(path, mmap_mode="r", allow_pickle=False)
                return tuple(mapped.shape), mapped.dtype
            shape, _, dtype = read(f)
    except (ValueError, OSError, EOFError) as err:
        raise MediaError(f"cannot read {path} as .npy: {err}") from None
    return tuple(shape), dtype


def npy_to_check(path: Path) -> np.ndarray:
    """The array to validate: a float .npy is read in full (its values can be NaN/inf or
    far outside [0, 1]); any other dtype is a zero-stride stand-in with the header's
    shape and dtype, so integer media are validated from the header alone."""
    shape, dtype = npy_header(path)
    if dtype.kind == "f":
        return load_npy(path)
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))


def npy_shape(path: Path) -> tuple[int, ...]:
    """Shape from the .npy header only (cheap up-front validation)."""
    return npy_header(path)[0]
