"""Media readers: image, video (single or multi-view), sequence and feature files -> tensors.

Readers raise `MediaError(reason)`; the dataset adds the manifest, row and column. Pixel
values end in [0, 1] before normalisation: integer arrays are divided by their dtype's
maximum (DICOM: by 2**BitsStored - 1), float arrays are taken as already in [0, 1]
(`float_range_note` reports arrays far outside it, which clamping would turn white).
Non-finite values (NaN, inf) in any array are a `MediaError`: one such row would make
every loss of its batch NaN. Validation reads float arrays in full to check this
(integer arrays cannot hold them, so their check stays header-only).
Images and frames are resized with `torch.nn.functional.interpolate` (bilinear,
antialiased) and normalised as (x - 0.5) / 0.5. With `uint8=True` an 8-bit picture that
PIL resized is returned as uint8 instead, for the model to normalise on its device
(`contrastkit.pixels`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.pixels import normalise_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
CONTAINER_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DICOM_SUFFIXES = (".dcm", ".dicom")
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


def _exists(path: Path) -> None:
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


def _unit_range(array: np.ndarray, bits: int | None = None) -> np.ndarray:
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


def _load_npy(path: Path) -> np.ndarray:
    _exists(path)
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
    _exists(path)
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
        return _load_npy(path)
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape, (0,) * len(shape))


def npy_shape(path: Path) -> tuple[int, ...]:
    """Shape from the .npy header only (cheap up-front validation)."""
    return npy_header(path)[0]


# Pictures already 8-bit L or RGB are resized by PIL (bilinear, antialiased when shrinking,
# like `_resize`, within one 8-bit level): about 2x faster than interpolating the float
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


def _decode_picture(path: Path, size: int | None = None) -> np.ndarray:
    """PNG/JPEG/... -> H x W or H x W x C array, via PIL when present, else matplotlib."""
    _exists(path)
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


def _to_channels(frames: np.ndarray, channels: int) -> Tensor:
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


def _resize(x: Tensor, size: int) -> Tensor:
    """N x C x H x W -> N x C x size x size, normalised to (x - 0.5) / 0.5."""
    if x.shape[-2:] != (size, size):
        shrink = x.shape[-1] > size or x.shape[-2] > size
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
        )
    return ((x.clamp(0.0, 1.0) - 0.5) / 0.5).contiguous()


def read_image(path: Path, size: int, channels: int, *, uint8: bool = False) -> Tensor:
    """An image file (.png/.jpg/..., or .npy H x W [x C]) -> C x size x size, normalised
    float (uint8 0..255 for an 8-bit picture when `uint8`; see `picture_tensor`)."""
    if path.suffix.lower() == ".npy":
        array = _load_npy(path)
        if array.ndim not in (2, 3) or array.size == 0:
            raise MediaError(
                f"image array must be a non-empty H x W or H x W x C, got shape {array.shape}"
            )
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        array = _decode_picture(path, size)
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
        return _resize(_to_channels(_unit_range(array)[None], channels), size)[0]
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
        _decode_picture(path)
        return None
    _exists(path)
    try:
        with Image.open(path) as img:
            img.verify()
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot decode image {path}: {err}") from None
    return None


def _decode_container(path: Path) -> np.ndarray:
    """.mp4/.avi/... -> T x H x W x 3 uint8 via PyAV."""
    try:
        import av
    except ImportError:
        raise MediaError("reading .mp4/.avi needs PyAV: pip install contrastkit[video]") from None
    _exists(path)
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
    _exists(path)
    try:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot decode DICOM {path}: {err}") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        pixels = pixels[None]
    return _unit_range(pixels, bits=getattr(ds, "BitsStored", None))


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (*IMAGE_SUFFIXES, ".npy"))
    if not files:
        raise MediaError(f"frame folder {folder} holds no image or .npy frames")
    return files


def _load_clip(path: Path) -> np.ndarray:
    """Any supported video source -> T x H x W [x C] array in [0, 1]."""
    _exists(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        frames = []
        for f in _frame_files(path):
            frame = _load_npy(f) if f.suffix.lower() == ".npy" else _decode_picture(f)
            frames.append(_unit_range(frame))
        if len({f.shape for f in frames}) != 1:
            raise MediaError(f"frames in {path} differ in size")
        return np.stack(frames)
    if suffix == ".npy":
        clip = _load_npy(path)
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
    return _unit_range(clip)


def read_clip(path: Path, frames: int, size: int, channels: int) -> Tensor:
    """One video -> frames x C x size x size, frames sampled uniformly over the clip.

    Clips shorter than `frames` repeat frames (nearest index), so every clip has T = frames.
    """
    clip = _load_clip(path)
    index = np.linspace(0, clip.shape[0] - 1, num=frames).round().astype(np.int64)
    return _resize(_to_channels(clip[index], channels), size)


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
        _exists(path)
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


def read_sequence(path: Path, max_length: int) -> Tensor:
    """A .npy T x J x C sequence (e.g. keypoints) -> float tensor, cropped to max_length."""
    array = _load_npy(path)
    if array.ndim != 3 or array.size == 0:
        raise MediaError(f"sequence must be a T x J x C array with T >= 1, got shape {array.shape}")
    check_numeric(array, "sequence array")
    return torch.from_numpy(np.ascontiguousarray(array[:max_length], dtype=np.float32))


def check_sequence(path: Path) -> tuple[int, ...]:
    """Validation: a non-empty T x J x C numeric array without NaN/inf."""
    array = npy_to_check(path)
    if array.ndim != 3 or array.size == 0:
        raise MediaError(f"sequence must be a T x J x C array with T >= 1, got shape {array.shape}")
    check_numeric(array, "sequence array")
    return tuple(array.shape)


def _safetensors_array(path: Path, shape_only: bool) -> np.ndarray | tuple[int, ...]:
    _exists(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            keys = list(f.keys())
            if not keys:
                raise MediaError(f"{path} holds no tensor")
            key = "features" if "features" in keys else keys[0]
            if shape_only:
                return tuple(f.get_slice(key).get_shape())
            return f.get_tensor(key)
    except MediaError:
        raise
    except Exception as err:  # noqa: BLE001
        raise MediaError(f"cannot read {path} as safetensors: {err}") from None


def features_shape(path: Path) -> tuple[int, ...]:
    """Shape of a features file (.npy header or safetensors header), checked to be F or N x F."""
    if path.suffix.lower() == ".safetensors":
        shape = _safetensors_array(path, shape_only=True)
    elif path.suffix.lower() == ".npy":
        shape = npy_shape(path)
    else:
        raise MediaError(f"unsupported features file {path.name}; use .npy or .safetensors")
    assert isinstance(shape, tuple)
    if len(shape) not in (1, 2) or 0 in shape:
        raise MediaError(f"features must be F or N x F (non-empty), got shape {shape}")
    return shape


def check_features(path: Path) -> tuple[int, ...]:
    """Validation: `features_shape` plus a numeric dtype and no NaN/inf (float files are
    read in full)."""
    shape = features_shape(path)
    if path.suffix.lower() == ".npy":
        array = npy_to_check(path)
    else:
        array = _safetensors_array(path, shape_only=False)  # type: ignore[assignment]
    check_numeric(array, "features array")
    return shape


def read_features(path: Path) -> Tensor:
    """A .npy / .safetensors vector (F) or token grid (N x F) -> float tensor."""
    features_shape(path)
    if path.suffix.lower() == ".safetensors":
        array = _safetensors_array(path, shape_only=False)
    else:
        array = _load_npy(path)
    assert isinstance(array, np.ndarray)
    check_numeric(array, "features array")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
