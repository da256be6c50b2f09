"""Key / value caching for autoregressive decoding of ``CaptioningDecoder``.

Without a cache, each decoding step re-runs the decoder over the whole prefix (O(L^2)
token passes per sequence); with it, a step computes only the new position and attends to
the stored keys / values of the earlier ones, and the cross-attention keys / values of the
memory are computed once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor


@dataclass
class LayerCache:
    """Keys / values one block keeps between decoding steps (B x heads x length x d)."""

    self_k: Tensor | None = None
    self_v: Tensor | None = None
    cross_k: Tensor | None = None
    cross_v: Tensor | None = None

    def select(self, index: Tensor) -> None:
        """Keep the rows ``index`` (beam search reordering its hypotheses)."""
        for name in ("self_k", "self_v", "cross_k", "cross_v"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.index_select(0, index))


class CachedDecoder(Protocol):
    """What `IncrementalStep` needs of a decoder (`CaptioningDecoder` has it): its blocks,
    one cache each, and logits over new positions given the caches. A protocol, so that
    this module does not import the decoder that imports it."""

    @property
    def blocks(self) -> Iterable[object]:
        """The decoder's blocks (one `LayerCache` each)."""
        ...

    def logits(
        self,
        ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        caches: list[LayerCache] | None = None,
        offset: int = 0,
    ) -> Tensor:
        """Next-token logits (B x t x V) for `ids` at positions `offset...`."""
        ...


class IncrementalStep:
    """A ``step(ids, memory, mask)`` for the decoding strategies that caches keys / values.

    When ``ids`` extends the prefix seen on the previous call by one token (same memory
    object), only the new position is computed; otherwise the caches are rebuilt from the
    whole prefix, so results never depend on the cache. ``reorder`` lets beam search keep
    the caches valid when it permutes hypotheses.
    """

    def __init__(self, decoder: CachedDecoder) -> None:
        self.decoder = decoder
        self.ids: Tensor | None = None
        self.memory: Tensor | None = None
        self.caches: list[LayerCache] = []

    def __call__(self, ids: Tensor, memory: Tensor, memory_mask: Tensor | None) -> Tensor:
        """Next-token logits for `ids` (B x L) over `memory`, reusing the caches when `ids` extends the last call by one token."""
        extends = (
            self.ids is not None
            and memory is self.memory
            and ids.shape[1] == self.ids.shape[1] + 1
            and torch.equal(ids[:, :-1], self.ids)
        )
        if extends:
            new = ids[:, -1:]
            offset = ids.shape[1] - 1
        else:
            self.caches = [LayerCache() for _ in self.decoder.blocks]
            self.memory, new, offset = memory, ids, 0
        self.ids = ids
        return self.decoder.logits(new, memory, memory_mask, self.caches, offset)[:, -1]

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` of the cached prefixes (B' indices into the previous batch)."""
        if self.ids is not None:
            self.ids = self.ids.index_select(0, index)
            for cache in self.caches:
                cache.select(index)
