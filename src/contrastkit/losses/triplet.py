"""Triplet loss with an attribute-adaptive margin (Schroff et al. 2015; Hermans et al. 2017).

L = mean over mined triplets of max(0, d(a, p) − d(a, n) + m(a, n)),
m(a, n) = base_margin + margin_scale · ||attr_a − attr_n||₂,

so negatives whose attributes differ more must be pushed further away.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import ObjectiveConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.losses.distributed import gather_no_grad, gather_with_grad
from contrastkit.losses.functional import pairwise_distance
from contrastkit.losses.miners import MINERS, TripletChunk, percentile_thresholds
from contrastkit.losses.precision import full_precision
from contrastkit.losses.result import ContrastiveResult
from contrastkit.registry import LOSSES

# Upper bound on c x B x B elements handled per anchor chunk (16 MiB of float32).
TRIPLET_CHUNK_ELEMENTS = 1 << 22


class TripletLoss(nn.Module):
    """Triplet loss over one embedding set (anchors, positives, negatives from one tower)
    or two (anchors from `a`, positives / negatives from `b`).

    Positives share the anchor's group id (or, with `miner="percentile"`, lie below the
    `pos_percentile`-th percentile of attribute distance); negatives are the others (above
    the `neg_percentile`-th). Anchors are processed in chunks whose c x B x B triplet mask
    fits `TRIPLET_CHUNK_ELEMENTS`; the loss is accumulated as a per-pair linear form, so
    the autograd graph holds only c x B tensors per chunk.

    Args:
        base_margin: constant part of the margin.
        margin_scale: weight of the attribute distance in the margin (needs attributes).
        miner: name in `MINERS` (all | batch_hard | semi_hard | percentile).
        pos_percentile / neg_percentile: thresholds for the percentile miner.
        same_label_negatives: negatives only among rows with the same (known) label.
        distance: cosine (1 − cos) or euclidean.
    """

    def __init__(
        self,
        base_margin: float = 0.2,
        margin_scale: float = 0.0,
        miner: str = "batch_hard",
        pos_percentile: float = 15.0,
        neg_percentile: float = 85.0,
        same_label_negatives: bool = False,
        distance: str = "cosine",
    ) -> None:
        super().__init__()
        if distance not in ("cosine", "euclidean"):
            raise ConfigError(f"triplet distance must be cosine or euclidean, got {distance!r}")
        if not 0 < pos_percentile < neg_percentile < 100:
            raise ConfigError("triplet percentiles need 0 < pos_percentile < neg_percentile < 100")
        self.miner_name = miner
        self.miner = MINERS.get(miner)
        self.base_margin = base_margin
        self.margin_scale = margin_scale
        self.pos_percentile = pos_percentile
        self.neg_percentile = neg_percentile
        self.same_label_negatives = same_label_negatives
        self.distance = distance

    def _check_inputs(self, attributes: Tensor | None, labels: Tensor | None) -> None:
        if attributes is None and (self.margin_scale > 0 or self.miner_name == "percentile"):
            raise DataError(
                "triplet loss with margin_scale > 0 or miner: percentile needs an `attributes` "
                "column in the manifest (batch['attributes'] is missing)"
            )
        if labels is None and self.same_label_negatives:
            raise DataError(
                "triplet loss with same_label_negatives needs a `label` column in the manifest"
            )

    @full_precision
    def forward(
        self,
        a: Tensor,
        b: Tensor | None,
        group_ids: Tensor,
        attributes: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> ContrastiveResult:
        """Mine triplets chunk by chunk and average the hinge over them.

        Shape:
            a: B x D; b: B x D or None (one embedding set); group_ids: B;
            attributes: B x A; labels: B (−1 = unknown).
        """
        self._check_inputs(attributes, labels)
        a = gather_with_grad(a)
        one_set = b is None
        cand = a if b is None else gather_with_grad(b)
        groups = gather_no_grad(group_ids)
        attrs = gather_no_grad(attributes)
        labels = gather_no_grad(labels)
        n = a.shape[0]
        not_self = ~torch.eye(n, dtype=torch.bool, device=a.device) if one_set else None
        thresholds = None
        if self.miner_name == "percentile":
            assert attrs is not None  # _check_inputs refused a batch without attributes
            attr_dist = torch.cdist(attrs.double(), attrs.double())
            valid = (
                not_self if not_self is not None else torch.ones_like(attr_dist, dtype=torch.bool)
            )
            thresholds = percentile_thresholds(
                attr_dist, valid, self.pos_percentile, self.neg_percentile
            )

        chunk = max(1, TRIPLET_CHUNK_ELEMENTS // max(1, cand.shape[0] ** 2))
        loss_sum = a.new_zeros(())
        acc = {"count": 0.0, "satisfied": 0.0, "margin": 0.0, "pos": 0.0, "neg": 0.0}
        for s0 in range(0, n, chunk):
            rows = slice(s0, s0 + chunk)
            dist = pairwise_distance(a[rows], cand, self.distance)
            with torch.no_grad():
                pos, neg = self._pair_masks(rows, groups, attrs, labels, not_self, thresholds)
                margin = self._margin(rows, attrs, dist)
                mined = TripletChunk(dist.detach(), margin, pos, neg)
                mask = self.miner(mined)
                active = mask & (mined.hinge() > 0)
                # Σ_active (d_ap + m_an − d_an) = Σ_p d_ap·A_p + Σ_n (m_an − d_an)·C_n
                as_pos = active.sum(2).to(dist.dtype)
                as_neg = active.sum(1).to(dist.dtype)
                n_as_pos = mask.sum(2).to(dist.dtype)
                n_as_neg = mask.sum(1).to(dist.dtype)
                acc["count"] += float(mask.sum())
                acc["satisfied"] += float((mask & ~active).sum())
                acc["margin"] += float((n_as_neg * margin).sum())
                acc["pos"] += float((n_as_pos * dist).sum())
                acc["neg"] += float((n_as_neg * dist).sum())
            loss_sum = loss_sum + (dist * (as_pos - as_neg)).sum() + (margin * as_neg).sum()

        count = acc["count"]
        loss = loss_sum / count if count else loss_sum * 0.0
        div = count or float("nan")
        return ContrastiveResult(
            loss=loss,
            num_positives=int(count),
            stats={
                "triplets": count,
                "mean_margin": acc["margin"] / div,
                "frac_satisfied": acc["satisfied"] / div,
                "pos_dist": acc["pos"] / div,
                "neg_dist": acc["neg"] / div,
            },
        )

    def _pair_masks(
        self,
        rows: slice,
        groups: Tensor,
        attrs: Tensor | None,
        labels: Tensor | None,
        not_self: Tensor | None,
        thresholds: tuple[Tensor, Tensor] | None,
    ) -> tuple[Tensor, Tensor]:
        """c x B valid positives and negatives of the anchors in `rows`."""
        if thresholds is None:
            pos = groups[rows, None] == groups[None, :]
            neg = ~pos
        else:
            assert attrs is not None  # thresholds come from attributes
            attr_dist = torch.cdist(attrs[rows].double(), attrs.double())
            pos = attr_dist <= thresholds[0]
            neg = (attr_dist >= thresholds[1]) & ~pos
        if not_self is not None:
            pos = pos & not_self[rows]
            neg = neg & not_self[rows]
        if self.same_label_negatives:
            assert labels is not None  # _check_inputs refused a batch without labels
            known = labels[rows, None] >= 0
            neg = neg & known & (labels[rows, None] == labels[None, :])
        return pos, neg

    def _margin(self, rows: slice, attrs: Tensor | None, like: Tensor) -> Tensor:
        """c x B margin of each (anchor, negative) pair."""
        if self.margin_scale == 0:
            return torch.full_like(like, self.base_margin).detach()
        assert attrs is not None  # _check_inputs refused a batch without attributes
        attr_dist = torch.cdist(attrs[rows].to(like.dtype), attrs.to(like.dtype))
        return self.base_margin + self.margin_scale * attr_dist


@LOSSES.register("triplet")
class TripletObjective(ObjectiveConfig):
    """`type: triplet`: margin = base_margin + margin_scale * ||attr_a - attr_n||."""

    type: Literal["triplet"] = Field(
        "triplet", description="triplet: margin loss on mined triplets"
    )
    base_margin: float = Field(
        0.2, ge=0.0, description="margin between positive and negative distances"
    )
    margin_scale: float = Field(
        0.0,
        ge=0.0,
        description="extra margin per unit of attribute distance (adaptive margin); 0: fixed",
    )
    miner: Literal["all", "batch_hard", "semi_hard", "percentile"] = Field(
        "batch_hard", description="which triplets count: all, batch_hard, semi_hard or percentile"
    )
    pos_percentile: float = Field(
        15.0,
        gt=0.0,
        lt=100.0,
        description="percentile miner: positives farther than this percentile",
    )
    neg_percentile: float = Field(
        85.0,
        gt=0.0,
        lt=100.0,
        description="percentile miner: negatives closer than this percentile",
    )
    same_label_negatives: bool = Field(
        False,
        description="draw negatives only among rows with the anchor's (known) label: harder negatives",
    )
    distance: Literal["cosine", "euclidean"] = Field(
        "cosine", description="distance between embeddings: cosine or euclidean"
    )

    @model_validator(mode="after")
    def _percentiles(self) -> TripletObjective:
        if self.pos_percentile >= self.neg_percentile:
            raise ValueError("pos_percentile must be below neg_percentile")
        return self

    @override
    def build(self) -> TripletLoss:
        return TripletLoss(
            base_margin=self.base_margin,
            margin_scale=self.margin_scale,
            miner=self.miner,
            pos_percentile=self.pos_percentile,
            neg_percentile=self.neg_percentile,
            same_label_negatives=self.same_label_negatives,
            distance=self.distance,
        )
