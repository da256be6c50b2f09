"""Contrastive losses run in float32, even inside an autocast (AMP) region.

Under bf16 autocast the B x B logits would be a bf16 matmul: with 8 mantissa bits a logit
of 50 is only known to ±0.25, which swamps the differences the softmax is meant to rank.
The towers may run in low precision; the loss upcasts their embeddings (a B x D copy) and
computes its logits and reductions in float32, as CLIP-style training code usually does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Any])
_LOW = (torch.float16, torch.bfloat16)


def _upcast(x: Any) -> Any:
    return x.float() if isinstance(x, Tensor) and x.dtype in _LOW else x


def full_precision(forward: F) -> F:
    """Decorate a loss `forward(self, *tensors, ...)`: autocast off, half inputs → float32."""

    @functools.wraps(forward)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        device = next((x.device.type for x in args if isinstance(x, Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            args = tuple(_upcast(x) for x in args)
            kwargs = {k: _upcast(v) for k, v in kwargs.items()}
            return forward(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
