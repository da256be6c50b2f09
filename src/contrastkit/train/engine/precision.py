"""Mixed precision for the engine (`train.amp`): the fp16 GradScaler and the autocast context.

`none` trains in float32, `bf16` autocasts without a scaler (CPU or CUDA), `fp16` autocasts
with a GradScaler and needs CUDA; the scaler's unscale/step lives in `optimizer_step.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from contrastkit.errors import ConfigError


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse fp16 off CUDA before anything is built.

    Raises:
        ConfigError: `amp: fp16` on a device that is not CUDA.
    """
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp: fp16 needs a CUDA device; use amp: bf16 on CPU")


def grad_scaler(amp: str) -> torch.amp.GradScaler | None:
    """The fp16 loss scaler, or None (bf16 and float32 need none)."""
    return torch.amp.GradScaler("cuda") if amp == "fp16" else None


def loss_scale(scaler: torch.amp.GradScaler | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """What multiplies the loss before backward: the scaler's scale, or the identity."""
    return scaler.scale if scaler else (lambda t: t)


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward pass's autocast context for `amp` on `device`."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
