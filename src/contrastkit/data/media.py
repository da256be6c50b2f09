"""The media readers' shared pixel pipeline: errors, options, numeric checks, [0, 1], resize.

Readers raise `MediaError(reason)`; the dataset adds the manifest, row and column. Pixel
values end in [0, 1] before normalisation: integer arrays are divided by their dtype's
maximum (DICOM: by 2**BitsStored - 1), float arrays are taken as already in [0, 1]
(`float_range_note` reports arrays far outside it, which clamping would turn white).
Non-finite values (NaN, inf) in any array are a `MediaError`: one such row would make
every loss of its batch NaN. Validation reads float arrays in full to check this
(integer arrays cannot hold them, so their check stays header-only).
Images and frames are resized with `torch.nn.functional.interpolate` (bilinear,
antialiased) and normalised as (x - 0.5) / 0.5. The readers live beside this module:
`images` (pictures), `video` (clips and multi-view studies), `arrays` (sequences and
features) and `npy_files` (.npy loading and headers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

NUMERIC_KINDS = "biuf"  # numpy dtype kinds a float tensor can be made from: bool, int, uint, float
# Float pixels are meant to lie in [0, 1]; resampling overshoot stays well inside
# [-1, 2], while arrays in another unit (0..255, 0..65535, z-scores of about +-3) leave it.
FLOAT_PIXEL_MIN = -1.0
FLOAT_PIXEL_MAX = 2.0


class MediaError(Exception):
    """A media file is missing, undecodable or has the wrong shape (the reason only)."""


@dataclass(frozen=True)
class ReadOptions:
    """What the readers need from `DataConfig` (plain values; see `from_config`)."""

    image_size: int = 32
    image_channels: int = 1
    video_frames: int = 8
    video_size: int = 32
    video_channels: int = 1
    max_views: int = 1
    max_length: int = 64

    @classmethod
    def from_config(cls, cfg: object) -> ReadOptions:
        """Build from a `DataConfig` (duck-typed to keep this module config-free)."""
        return cls(
            image_size=cfg.image.size,  # type: ignore[attr-defined]
            image_channels=cfg.image.channels,  # type: ignore[attr-defined]
            video_frames=cfg.video.frames,  # type: ignore[attr-defined]
            video_size=cfg.video.size,  # type: ignore[attr-defined]
            video_channels=cfg.video.channels,  # type: ignore[attr-defined]
            max_views=cfg.video.max_views,  # type: ignore[attr-defined]
            max_length=cfg.sequence.max_length,  # type: ignore[attr-defined]
        )


def require_file(path: Path) -> None:
    """A `MediaError` naming the path when it is missing or cannot be looked at."""
    try:
        found = path.exists()
    except (OSError, ValueError) as err:  # name too long, NUL byte, permission denied
        raise MediaError(f"cannot access {path}: {err}") from None
    if not found:
        raise MediaError(f"file not found: {path}")


def check_numeric(array: np.ndarray, what: str) -> None:
    """A numeric dtype and no NaN/inf; reads the whole array when it is float."""
    if array.dtype.kind not in NUMERIC_KINDS:
        raise MediaError(f"{what} has dtype {array.dtype}; it must hold numbers")
    if array.dtype.kind == "f":
        bad = array.size - int(np.count_nonzero(np.isfinite(array)))
        if bad:
            raise MediaError(f"{what} has {bad} non-finite values (NaN or inf) of {array.size}")


def float_range_note(array: np.ndarray) -> str | None:
    """Why a float pixel array looks like it is not in [0, 1], or None."""
    if array.dtype.kind != "f" or array.size == 0:
        return None
    lo, hi = float(array.min()), float(array.max())
    if lo < FLOAT_PIXEL_MIN or hi > FLOAT_PIXEL_MAX:
        return f"float pixels span [{lo:g}, {hi:g}], far outside [0, 1]"
    return None


def unit_range(array: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Integer pixels -> [0, 1] by the dtype's (or DICOM's BitsStored) maximum."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        top = (2**bits - 1) if bits else np.iinfo(array.dtype).max
        return array.astype(np.float32) / float(top)
    if not np.issubdtype(array.dtype, np.floating):
        raise MediaError(f"unsupported pixel dtype {array.dtype}")
    check_numeric(array, "pixel array")
    return array.astype(np.float32)


def to_channels(frames: np.ndarray, channels: int) -> Tensor:
    """N x H x W [x C] in [0, 1] -> N x channels x H x W float tensor."""
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 2, 3, 4):
        raise MediaError(f"expected H x W or H x W x C pixels (C <= 4), got {frames.shape[1:]}")
    if frames.shape[-1] in (2, 4):  # drop alpha
        frames = frames[..., :-1]
    x = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2)
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True) if channels == 1 else x.expand(-1, 3, -1, -1)
    return x


def resize_normalised(x: Tensor, size: int) -> Tensor:
    """N x C x H x W -> N x C x size x size, normalised to (x - 0.5) / 0.5."""
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-1] > size or x.shape[-2] > size
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
        )
    return ((x.clamp(0.0, 1.0) - 0.5) / 0.5).contiguous()
