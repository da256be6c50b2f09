"""Auxiliary heads, each registered in `registry.HEADS` under its loss term's name:
captioning decoder (`captioning`), masked token modelling (`masked`), classifier
(`classification`). Adding a head is one file here (module with `run`, config model
with `build` and `loss`, `@HEADS.register("<term>")`) plus its import below."""

from contrastkit.models.heads.captioning import CaptioningHeadConfig
from contrastkit.models.heads.captioning_decoder import CaptioningDecoder
from contrastkit.models.heads.classifier import ClassificationHeadConfig, ClassifierHead
from contrastkit.models.heads.masked import MaskedHeadConfig, MaskedModellingHead

__all__ = [
    "CaptioningDecoder",
    "CaptioningHeadConfig",
    "ClassificationHeadConfig",
    "ClassifierHead",
    "MaskedHeadConfig",
    "MaskedModellingHead",
]
