"""Image readers: pictures (.png/.jpg/...) and .npy arrays -> C x size x size tensors.

With `uint8=True` an 8-bit picture that PIL resized is returned as uint8 instead, for the
model to normalise on its device (`contrastkit.pixels`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.media import (
    MediaError,
    check_numeric,
    float_range_note,
    require_file,
    resize_normalised,
    to_channels,
    unit_range,
)
from contrastkit.data.npy_files import load_npy, npy_to_check
from contrastkit.pixels import normalise_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")

# Pictures already 8-bit L or RGB are resized by PIL (bilinear, antialiased when shrinking,
# like `resize_normalised`, within one 8-bit level): about 2x faster than interpolating the float
# tensor, and decode + resize is the loader's main cost per image (bench/loader.py).
PIL_RESIZE_MODES = ("L", "RGB")


def pil_pixels(img: object, size: int | None = None) -> np.ndarray:
    """An open PIL image -> array (odd modes as RGB), resized to size x size by PIL when
    it is 8-bit L/RGB and `size` is given (other modes are resized later as tensors)."""
    from PIL import Image

    assert isinstance(img, Image.Image)
    img.load()
    if img.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F"):
        img = img.convert("RGB")
    if size is not None and img.mode in PIL_RESIZE_MODES and img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img)


def decode_picture(path: Path, size: int | None = None) -> np.ndarray:
    """PNG/JPEG/... -> H x W or H x W x C array, via PIL when present, else matplotlib."""
    require_file(path)
    try:
        from PIL import Image
    except ImportError:  # matplotlib reads PNG natively
        import matplotlib.image as mpimg

        try:
            return mpimg.imread(path)
        except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file
            raise MediaError(f"cannot decode image {path}: {err}") from None
    try:
        with Image.open(path) as img:
            return pil_pixels(img, size)
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot decode image {path}: {err}") from None


def read_image(path: Path, size: int, channels: int, *, uint8: bool = False) -> Tensor:
    """An image file (.png/.jpg/..., or .npy H x W [x C]) -> C x size x size, normalised
    float (uint8 0..255 for an 8-bit picture when `uint8`; see `picture_tensor`)."""
    if path.suffix.lower() == ".npy":
        array = load_npy(path)
        if array.ndim not in (2, 3) or array.size == 0:
            raise MediaError(
                f"image array must be a non-empty H x W or H x W x C, got shape {array.shape}"
            )
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        array = decode_picture(path, size)
    else:
        raise MediaError(
            f"unsupported image file {path.name}; use {', '.join(IMAGE_SUFFIXES)} or .npy"
        )
    return picture_tensor(array, size, channels, uint8=uint8)


def picture_tensor(array: np.ndarray, size: int, channels: int, *, uint8: bool = False) -> Tensor:
    """H x W [x C] pixels -> channels x size x size, normalised float (see the module
    docstring). With `uint8`, 8-bit pixels already size x size with 1 or 3 channels come
    back as uint8 0..255 for `contrastkit.pixels.normalise_pixels` to finish on the
    model's device; every other array is normalised float either way."""
    fast = _u8_tensor(array, size, channels)
    if fast is None:
        return resize_normalised(to_channels(unit_range(array)[None], channels), size)[0]
    return fast if uint8 else normalise_pixels(fast)


def _u8_tensor(array: np.ndarray, size: int, channels: int) -> Tensor | None:
    """8-bit pixels already size x size -> uint8 channels x size x size in one copy (the
    float path makes six passes over a float image); None when the general path is
    needed (other dtypes, sizes, alpha, or RGB to one channel)."""
    if array.dtype != np.uint8 or array.shape[:2] != (size, size):
        return None
    pixels = array if array.ndim == 3 else array[..., None]
    c = pixels.shape[-1]
    if c not in (1, 3) or (c == 3 and channels == 1):
        return None
    with warnings.catch_warnings():  # PIL's arrays are read-only; the copy below is ours
        warnings.simplefilter("ignore", UserWarning)
        source = torch.from_numpy(pixels).permute(2, 0, 1)
    return torch.empty((channels, size, size), dtype=torch.uint8).copy_(
        source.expand(channels, -1, -1)
    )


def check_image(path: Path) -> str | None:
    """Validation: a .npy's header (and float values), or a PIL `verify()` (full decode
    without PIL). Returns a `float_range_note` for a float array far outside [0, 1]."""
    if path.suffix.lower() == ".npy":
        array = npy_to_check(path)
        if array.ndim not in (2, 3) or array.size == 0:
            raise MediaError(
                f"image array must be a non-empty H x W or H x W x C, got shape {array.shape}"
            )
        check_numeric(array, "image array")
        return float_range_note(array)
    try:
        from PIL import Image
    except ImportError:
        decode_picture(path)
        return None
    require_file(path)
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot decode image {path}: {err}") from None
    return None
