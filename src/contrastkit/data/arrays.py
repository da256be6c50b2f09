"""Array readers: keypoint sequences (.npy T x J x C) and precomputed features (.npy or
.safetensors, F or N x F) -> float tensors, with their header-first validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit.data.media import MediaError, check_numeric, require_file
from contrastkit.data.npy_files import load_npy, npy_shape, npy_to_check


def read_sequence(path: Path, max_length: int) -> Tensor:
    """A .npy T x J x C sequence (e.g. keypoints) -> float tensor, cropped to max_length."""
    array = load_npy(path)
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
    require_file(path)
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
        array = load_npy(path)
    assert isinstance(array, np.ndarray)
    check_numeric(array, "features array")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
