"""Encoders, fusion, projection, tokenizers and model assembly (`build_model`)."""

from contrastkit.models.builder import build_model
from contrastkit.models.encoders import ENCODERS, build_encoder, make_encoder
from contrastkit.models.model import ContrastiveModel
from contrastkit.models.outputs import EncoderOutput, ModelOutput, TowerOutput
from contrastkit.models.tokenizer import (
    BuiltinTokenizer,
    HFTokenizer,
    Tokenizer,
    build_tokenizer,
    load_tokenizer,
)
from contrastkit.models.tower import Tower

__all__ = [
    "ENCODERS",
    "BuiltinTokenizer",
    "ContrastiveModel",
    "EncoderOutput",
    "HFTokenizer",
    "ModelOutput",
    "Tokenizer",
    "Tower",
    "TowerOutput",
    "build_encoder",
    "build_model",
    "build_tokenizer",
    "load_tokenizer",
    "make_encoder",
]
