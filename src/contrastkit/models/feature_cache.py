"""Frozen-feature cache (LiT, Zhai et al. 2022): a tower whose encoder is locked for the
whole run is encoded once per input; later epochs read the pooled features from disk.

A cache belongs to one encoder and lives in one folder named by a hash of
(the encoder's weights, its preprocessing: class, `max_length`, pooling, the data read
options). Each input is keyed by the SHA-1 of its content (the text, or the bytes of the
decoded tensor), so a changed manifest row is simply a new key: it misses and is encoded.
Keys already seen are never encoded again; new ones are encoded in eval mode (no dropout:
a locked tower is deterministic, so cached and uncached features agree) and appended to
the folder as one `part-NNNNN.npy` (rows x D, float32, read back memory-mapped) plus
`part-NNNNN.keys` (one key a line) at each `flush()` (the app flushes at every epoch end).

The tower consults its cache in `Tower.features`; a hit returns the pooled features as a
one-token `EncoderOutput`, so only single-stream towers without fusion and without a
head reading their tokens are cached (the app decides, see app/lit.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.models.outputs import EncoderOutput

# Weights are hashed in slices of this many bytes (keeps peak memory flat for big towers).
_HASH_SLICE = 1 << 24


def weights_hash(module: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes) of `module`."""
    h = hashlib.sha256()
    for name, t in sorted(
        {**dict(module.named_parameters()), **dict(module.named_buffers())}.items()
    ):
        data = t.detach().cpu().contiguous()
        h.update(f"{name}:{data.dtype}:{tuple(data.shape)}".encode())
        raw = data.view(torch.uint8).reshape(-1).numpy() if data.numel() else np.zeros(0, np.uint8)
        for start in range(0, len(raw), _HASH_SLICE):
            h.update(raw[start : start + _HASH_SLICE].tobytes())
    return h.hexdigest()


def preprocessing_key(encoder: nn.Module, read_options: Any = None) -> dict[str, Any]:
    """What, besides the weights, decides an encoder's output for a given input."""
    return {
        "class": f"{type(encoder).__module__}.{type(encoder).__qualname__}",
        "max_length": getattr(encoder, "max_length", None),
        "pool": getattr(encoder, "pool", None),
        "read_options": repr(read_options),
    }


def content_key(value: Any) -> str:
    """SHA-1 of one input: a string's UTF-8 bytes, else the tensor's dtype, shape, bytes."""
    if isinstance(value, str):
        return hashlib.sha1(b"s" + value.encode()).hexdigest()
    t = torch.as_tensor(value).detach().cpu().contiguous()
    h = hashlib.sha1(f"t{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(torch.uint8).reshape(-1).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _take(inputs: Any, index: list[int]) -> Any:
    if isinstance(inputs, Tensor):
        return inputs[index]
    return [inputs[i] for i in index]


class FeatureCache:
    """Pooled features of one locked encoder, by input content, on disk.

    Args:
        folder: the parent folder; this cache uses `folder/<hash of weights + preprocessing>`.
        encoder: the locked encoder (its weights are hashed once, here).
        read_options: the data read options (image size, frames...) that shape its input.

    Attributes:
        encoded: inputs this cache had to run the encoder for (misses) since it was made.
    """

    def __init__(self, folder: str | Path, encoder: nn.Module, read_options: Any = None) -> None:
        key = {"weights": weights_hash(encoder), **preprocessing_key(encoder, read_options)}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(folder) / digest
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
        self.encoder = encoder
        self.index: dict[str, tuple[int, int]] = {}  # content key -> (part, row)
        self.parts: list[np.ndarray] = []
        self.pending: dict[str, Tensor] = {}
        self.encoded = 0
        self._load()

    def _load(self) -> None:
        for keys_file in sorted(self.folder.glob("part-*.keys")):
            array = np.load(keys_file.with_suffix(".npy"), mmap_mode="r")
            part = len(self.parts)
            self.parts.append(array)
            for row, key in enumerate(keys_file.read_text().split()):
                self.index.setdefault(key, (part, row))

    def __len__(self) -> int:
        return len(self.index) + len(self.pending)

    def _get(self, key: str) -> Tensor:
        if key in self.pending:
            return self.pending[key]
        part, row = self.index[key]
        return torch.from_numpy(np.array(self.parts[part][row]))

    def features(self, inputs: Any, mask: Tensor | None, device: torch.device) -> EncoderOutput:
        """Pooled features of a batch: cached rows read back, new rows encoded (eval mode)."""
        keys = [content_key(v) for v in inputs]
        first: dict[str, int] = {}  # each new key once, even when a batch repeats it
        for i, k in enumerate(keys):
            if k not in self.index and k not in self.pending:
                first.setdefault(k, i)
        missing = list(first.values())
        if missing:
            was_training = self.encoder.training
            self.encoder.eval()
            try:
                with torch.no_grad():
                    sub_mask = None if mask is None else mask[missing]
                    out = self.encoder(_take(inputs, missing), sub_mask)
            finally:
                self.encoder.train(was_training)
            for i, row in zip(missing, out.pooled.detach().float().cpu(), strict=True):
                self.pending.setdefault(keys[i], row.clone())
            self.encoded += len(missing)
        pooled = torch.stack([self._get(k) for k in keys]).to(device)
        return EncoderOutput(tokens=pooled[:, None, :], pooled=pooled, mask=None)

    def flush(self) -> None:
        """Append the features encoded since the last flush to the folder (atomically)."""
        if not self.pending:
            return
        part = len(self.parts)
        stem = self.folder / f"part-{uuid.uuid4().hex[:16]}"  # unique across processes
        keys = list(self.pending)
        array = torch.stack([self.pending[k] for k in keys]).numpy().astype(np.float32)
        tmp = stem.with_suffix(".tmp.npy")
        np.save(tmp, array)
        os.replace(tmp, stem.with_suffix(".npy"))
        # The .keys file is written last: a part without one is ignored when loading.
        stem.with_suffix(".keys").write_text("\n".join(keys) + "\n")
        self.parts.append(np.load(stem.with_suffix(".npy"), mmap_mode="r"))
        for row, key in enumerate(keys):
            self.index.setdefault(key, (part, row))
        self.pending.clear()


def attach_cache(tower: nn.Module, cache: FeatureCache | None) -> None:
    """Make `tower.features` read `cache` (None detaches). A plain attribute, not a
    submodule: the cache is no part of the model's weights or checkpoints."""
    object.__setattr__(tower, "feature_cache", cache)


def cached_features(
    tower: nn.Module, inputs: Mapping[str, Any], masks: Mapping[str, Tensor | None]
) -> EncoderOutput | None:
    """The tower's features from its cache, or None when it has none."""
    cache: FeatureCache | None = getattr(tower, "feature_cache", None)
    if cache is None:
        return None
    (column,) = list(inputs)
    device = next((p.device for p in tower.parameters()), next(cache.encoder.parameters()).device)
    return cache.features(inputs[column], masks.get(column), device)
