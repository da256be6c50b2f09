"""The pixel contract between the data loader and the model.

An `image` (or `video`) tensor in a batch is either float, already normalised to
(x - 0.5) / 0.5 with x in [0, 1], or uint8 (0..255, not normalised). 8-bit pictures that
PIL has already resized stay uint8 through the workers, the collate, pinned memory and
the host-to-device copy (a quarter of float32's bytes on each), and the model normalises
them on its own device when it reads the batch (`ContrastiveModel` calls
`normalise_pixels`). Both forms give the same float values, bit for bit:
x * (2 / 255) - 1 is computed in float32 either way.
"""

from __future__ import annotations

import torch
from torch import Tensor

PIXEL_COLUMNS = ("image", "video")


def normalise_pixels(x: Tensor) -> Tensor:
    """uint8 pixels -> float32 (x / 255 - 0.5) / 0.5 on x's device; float input as is."""
    if x.dtype != torch.uint8:
        return x
    return x.to(torch.float32).mul_(2.0 / 255.0).sub_(1.0)
