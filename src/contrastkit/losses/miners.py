"""Triplet miners: which (anchor, positive, negative) triplets a chunk of anchors uses.

A miner sees one chunk of c anchors against all B candidates (distances, margins and
valid positive / negative masks, each c x B) and returns a c x B x B bool mask over
(anchor, positive, negative). The triplet loss walks anchors chunk by chunk so the
c x B x B mask stays within a fixed budget: the B³ set of triplets never exists at once.

Users can add miners with `@MINERS.register("name")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from contrastkit.registry import Registry


@dataclass
class TripletChunk:
    """Mining inputs for anchors [start, start + c) (all detached).

    Attributes:
        dist: c x B anchor-to-candidate distances.
        margin: c x B margin of each (anchor, negative) pair.
        pos / neg: c x B bool, valid positives / negatives of each anchor.
    """

    dist: Tensor
    margin: Tensor
    pos: Tensor
    neg: Tensor

    def valid(self) -> Tensor:
        """c x B x B: every triplet whose positive and negative are valid."""
        return self.pos[:, :, None] & self.neg[:, None, :]

    def hinge(self) -> Tensor:
        """c x B x B: d(a, p) + margin(a, n) − d(a, n); > 0 means the triplet is violated."""
        return self.dist[:, :, None] + (self.margin - self.dist)[:, None, :]


Miner = Callable[[TripletChunk], Tensor]
MINERS: Registry[Miner] = Registry("miner")


@MINERS.register("all")
def mine_all(chunk: TripletChunk) -> Tensor:
    """Every valid triplet (easy ones contribute zero loss but count in the mean)."""
    return chunk.valid()


@MINERS.register("batch_hard")
def mine_batch_hard(chunk: TripletChunk) -> Tensor:
    """Hardest positive and hardest negative per anchor (Hermans et al. 2017).

    The hardest negative maximises margin − distance, i.e. the smallest distance when the
    margin is constant and the most violated one when the margin is adaptive.
    """
    c, n = chunk.dist.shape
    far = torch.finfo(chunk.dist.dtype).max
    pos_score = chunk.dist.masked_fill(~chunk.pos, -far)
    neg_score = (chunk.margin - chunk.dist).masked_fill(~chunk.neg, -far)
    p_idx = pos_score.argmax(1)
    n_idx = neg_score.argmax(1)
    has_both = chunk.pos.any(1) & chunk.neg.any(1)
    mask = torch.zeros((c, n, n), dtype=torch.bool, device=chunk.dist.device)
    rows = torch.arange(c, device=chunk.dist.device)
    mask[rows, p_idx, n_idx] = has_both
    return mask


@MINERS.register("semi_hard")
def mine_semi_hard(chunk: TripletChunk) -> Tensor:
    """FaceNet semi-hard negatives (Schroff et al. 2015): d(a,p) < d(a,n) < d(a,p) + margin.

    These violate the margin but are not closer than the positive, which avoids the
    collapsed solutions the hardest negatives can cause early in training.
    """
    d_ap = chunk.dist[:, :, None]
    d_an = chunk.dist[:, None, :]
    return chunk.valid() & (d_an > d_ap) & (d_an < d_ap + chunk.margin[:, None, :])


@MINERS.register("percentile")
def mine_percentile(chunk: TripletChunk) -> Tensor:
    """Every valid triplet; the positives / negatives come from `percentile_pairs`."""
    return chunk.valid()


def percentile_value(values: Tensor, q: float) -> Tensor:
    """The q-th percentile (0 < q < 100, nearest rank) of a flat tensor of any size.

    `torch.quantile` refuses inputs over 2^24 elements; `kthvalue` does not.
    """
    flat = values.reshape(-1)
    k = min(max(1, int(round(q / 100.0 * flat.numel()))), flat.numel())
    return flat.kthvalue(k).values


def percentile_thresholds(
    attr_dist: Tensor, valid: Tensor, pos_percentile: float, neg_percentile: float
) -> tuple[Tensor, Tensor]:
    """Attribute-distance thresholds: positives at or below the p-th, negatives at or above the q-th.

    Args:
        attr_dist: B_a x B_b attribute distances.
        valid: B_a x B_b bool, pairs that may be used (self-pairs excluded by the caller).
    """
    values = attr_dist[valid]
    if values.numel() == 0:
        inf = attr_dist.new_tensor(float("inf"))
        return -inf, inf
    return percentile_value(values, pos_percentile), percentile_value(values, neg_percentile)
