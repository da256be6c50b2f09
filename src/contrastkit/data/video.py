"""Video readers: .npy/.npz arrays, frame folders, containers (.mp4/.avi via PyAV) and
DICOM cine (pydicom) -> T x C x H x W clips; several views of a study -> V x T x C x H x W
with a view mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.images import IMAGE_SUFFIXES, decode_picture
from contrastkit.data.media import (
    MediaError,
    ReadOptions,
    check_numeric,
    float_range_note,
    require_file,
    resize_normalised,
    to_channels,
    unit_range,
)
from contrastkit.data.npy_files import load_npy, npy_to_check

CONTAINER_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DICOM_SUFFIXES = (".dcm", ".dicom")


def _decode_container(path: Path) -> np.ndarray:
    """.mp4/.avi/... -> T x H x W x 3 uint8 via PyAV."""
    try:
        import av
    except ImportError:
        raise MediaError("reading .mp4/.avi needs PyAV: pip install contrastkit[video]") from None
    require_file(path)
    try:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot decode video {path}: {err}") from None
    if not frames:
        raise MediaError(f"video {path} has no frames")
    return np.stack(frames)


def _decode_dicom(path: Path) -> np.ndarray:
    """DICOM cine -> T x H x W [x C] in [0, 1] via pydicom."""
    try:
        import pydicom
    except ImportError:
        raise MediaError("reading DICOM needs pydicom: pip install contrastkit[video]") from None
    require_file(path)
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot decode DICOM {path}: {err}") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[None]
    return unit_range(pixels, bits=getattr(ds, "BitsStored", None))


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"))
    if not files:
        raise MediaError(f"frame folder {folder} holds no image or .npy frames")
    return files


def _load_clip(path: Path) -> np.ndarray:
    """Any supported video source -> T x H x W [x C] array in [0, 1]."""
    require_file(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        frames = []
        for f in _frame_files(path):
            frame = load_npy(f) if f.suffix.lower() == ".npy" else decode_picture(f)
            frames.append(unit_range(frame))
        if len({f.shape for f in frames}) != 1:
            raise MediaError(f"frames in {path} differ in size")
        return np.stack(frames)
    if suffix == ".npy":
        clip = load_npy(path)
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                key = "frames" if "frames" in archive.files else archive.files[0]
                clip = archive[key]
        except (ValueError, OSError, IndexError, EOFError) as err:
            raise MediaError(f"cannot read {path} as .npz: {err}") from None
    elif suffix in CONTAINER_SUFFIXES:
        clip = _decode_container(path)
    elif suffix in DICOM_SUFFIXES:
        return _decode_dicom(path)
    else:
        raise MediaError(
            f"unsupported video {path.name}; use .npy/.npz, a frame folder, .mp4/.avi or .dcm"
        )
    if clip.ndim not in (3, 4) or clip.size == 0:
        raise MediaError(f"video array must be T x H x W or T x H x W x C, got shape {clip.shape}")
    return unit_range(clip)


def read_clip(path: Path, frames: int, size: int, channels: int) -> Tensor:
    """One video -> frames x C x size x size, frames sampled uniformly over the clip.

    Clips shorter than `frames` repeat frames (nearest index), so every clip has T = frames.
    """
    clip = _load_clip(path)
    index = np.linspace(0, clip.shape[0] - 1, num=frames).round().astype(np.int64)
    return resize_normalised(to_channels(clip[index], channels), size)


def read_video(paths: Path | tuple[Path, ...], opts: ReadOptions) -> tuple[Tensor, Tensor | None]:
    """A video, or a multi-view study, -> (T x C x H x W, None) or (V x T x C x H x W, mask V).

    With `max_views > 1` the first `max_views` views are kept; missing views are zeros
    with mask False. With `max_views == 1` a list keeps only its first view.
    """
    views = paths if isinstance(paths, tuple) else (paths,)
    read = [
        read_clip(p, opts.video_frames, opts.video_size, opts.video_channels)
        for p in views[: opts.max_views]
    ]
    if opts.max_views == 1:
        return read[0], None
    out = torch.zeros(opts.max_views, *read[0].shape)
    out[: len(read)] = torch.stack(read)
    mask = torch.arange(opts.max_views) < len(read)
    return out, mask


def check_video(paths: Path | tuple[Path, ...], max_views: int) -> str | None:
    """Validation: files exist, .npy headers have video shapes (float .npy: finite
    values), containers open. Returns a `float_range_note` like `check_image`."""
    views = paths if isinstance(paths, tuple) else (paths,)
    note = None
    for path in views[:max_views]:
        require_file(path)
        suffix = path.suffix.lower()
        if path.is_dir():
            _frame_files(path)
        elif suffix == ".npy":
            clip = npy_to_check(path)
            if clip.ndim not in (3, 4) or clip.size == 0:
                raise MediaError(
                    f"video array must be T x H x W or T x H x W x C, got shape {clip.shape}"
                )
            check_numeric(clip, "video array")
            note = note or float_range_note(clip)
        elif suffix in DICOM_SUFFIXES:
            _decode_dicom(path)
        else:
            note = note or float_range_note(_load_clip(path))  # .npz, containers: decode once
    return note
