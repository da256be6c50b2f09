"""Auxiliary heads: captioning decoder, masked token modelling, classifier."""

from contrastkit.models.heads.captioning import CaptioningDecoder
from contrastkit.models.heads.classifier import ClassifierHead
from contrastkit.models.heads.masked import MaskedModellingHead

__all__ = ["CaptioningDecoder", "ClassifierHead", "MaskedModellingHead"]
