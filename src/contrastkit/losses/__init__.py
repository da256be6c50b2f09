"""contrastkit.losses: contrastive objectives (CLIP, SigLIP, triplet), auxiliary terms,
the multitask loss and term weights."""

from contrastkit.losses.clip import ClipLoss
from contrastkit.losses.distributed import gather_no_grad, gather_with_grad
from contrastkit.losses.miners import MINERS
from contrastkit.losses.multitask import LOSSES, MultitaskLoss, build_loss
from contrastkit.losses.result import ContrastiveResult, LossOutput
from contrastkit.losses.siglip import SiglipLoss
from contrastkit.losses.triplet import TripletLoss
from contrastkit.losses.weights import schedule_value, weights_at

__all__ = [
    "LOSSES",
    "MINERS",
    "ClipLoss",
    "ContrastiveResult",
    "LossOutput",
    "MultitaskLoss",
    "SiglipLoss",
    "TripletLoss",
    "build_loss",
    "gather_no_grad",
    "gather_with_grad",
    "schedule_value",
    "weights_at",
]
