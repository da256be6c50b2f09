"""contrastkit.losses: contrastive objectives (CLIP, SigLIP, triplet), auxiliary terms,
the multitask loss and term weights."""

from contrastkit.losses.clip import ClipLoss, ClipObjective
from contrastkit.losses.distributed import gather_no_grad, gather_with_grad
from contrastkit.losses.miners import MINERS
from contrastkit.losses.multitask import MultitaskLoss, build_loss
from contrastkit.losses.result import ContrastiveResult, LossOutput
from contrastkit.losses.siglip import SiglipLoss, SiglipObjective
from contrastkit.losses.triplet import TripletLoss, TripletObjective
from contrastkit.losses.weights import schedule_value, weights_at
from contrastkit.registry import LOSSES

__all__ = [
    "LOSSES",
    "MINERS",
    "ClipLoss",
    "ClipObjective",
    "ContrastiveResult",
    "LossOutput",
    "MultitaskLoss",
    "SiglipLoss",
    "SiglipObjective",
    "TripletLoss",
    "TripletObjective",
    "build_loss",
    "gather_no_grad",
    "gather_with_grad",
    "schedule_value",
    "weights_at",
]
