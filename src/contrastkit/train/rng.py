"""Random-number-generator state: capture, restore and JSON round trips.

Two users need this. Cached accumulation (GradCache, Gao et al. 2021) replays each
micro-batch's forward with the exact same dropout / masking draws, so it must rewind the
generators to the state they had before the first (no-grad) forward. Checkpoints store
the generators so a resumed run draws the same numbers an uninterrupted run would.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class RngState:
    """Snapshot of every generator the engine and the data pipeline draw from."""

    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] | None
    python: tuple
    numpy: tuple | dict[str, Any]  # a tuple at run time (legacy format); the stubs say dict


def capture_rng() -> RngState:
    """Snapshot torch (CPU and every CUDA device), python `random` and numpy."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return RngState(torch.get_rng_state(), cuda, random.getstate(), np.random.get_state())


def restore_rng(state: RngState) -> None:
    """Put every generator back to `state`."""
    torch.set_rng_state(state.torch_cpu)
    if state.torch_cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state.torch_cuda)
    random.setstate(state.python)
    np.random.set_state(state.numpy)


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def rng_to_json(state: RngState) -> dict[str, Any]:
    """A JSON-serialisable form of `state` (byte tensors as base64)."""
    version, internal, gauss = state.python
    name, keys, pos, has_gauss, cached = state.numpy
    return {
        "torch_cpu": _b64(state.torch_cpu),
        "torch_cuda": None if state.torch_cuda is None else [_b64(t) for t in state.torch_cuda],
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }


def rng_from_json(data: dict[str, Any]) -> RngState:
    """Inverse of `rng_to_json`."""
    version, internal, gauss = data["python"]
    name, keys, pos, has_gauss, cached = data["numpy"]
    cuda = data.get("torch_cuda")
    return RngState(
        torch_cpu=_unb64(data["torch_cpu"]),
        torch_cuda=None if cuda is None else [_unb64(s) for s in cuda],
        python=(version, tuple(internal), gauss),
        numpy=(name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
    )
