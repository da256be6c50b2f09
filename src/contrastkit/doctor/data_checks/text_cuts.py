"""Which tokenizer cuts each text column of a run, at which length, set by which key.

A text column read by a built-in text encoder goes through the run's tokenizer
(`model.tokenizer`, built from the train split's texts exactly as `train` builds it) at
`model.tokenizer.max_length` or the encoder's own `max_length` option; a
column read by a local Hugging Face text model (`hf_text`, `minilm`, `hf_clip`) goes
through that model's own tokenizer at the encoder's `max_length` option. This is the
factory of the truncation check: the only place it reads the config.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from contrastkit.config import Config
from contrastkit.data.manifest import is_text_column
from contrastkit.models import HFTokenizer, Tokenizer, build_tokenizer
from contrastkit.models.encoders.hf_text import HFTextEncoder, minilm_path

# Encoders that tokenise with their own Hugging Face tokenizer (`options.max_length`).
HF_TEXT_ENCODERS = ("hf_text", "minilm")
HF_CLIP_ENCODER = "hf_clip"


@dataclass(frozen=True)
class TextCut:
    """One text column, the tokenizer that reads it and the length it cuts at.

    Attributes:
        column: the text column (`text`, `text_code`, ...).
        tokenizer: encodes texts (`encode(texts, max_length)`, `decode(ids)`).
        max_length: tokens kept per text, start and end tokens included.
        key: the config key (or CLI option) that sets `max_length`.
        limit: the longest length the model accepts (None: no limit known).
    """

    column: str
    tokenizer: Any
    max_length: int
    key: str
    limit: int | None = None


def _hf_limit(tokenizer: HFTokenizer) -> int | None:
    top = int(getattr(tokenizer.hf, "model_max_length", 0) or 0)
    return top if 0 < top < 1_000_000 else None


def hf_cut(column: str, path: str, max_length: int | None, key: str) -> TextCut:
    """A local Hugging Face tokenizer folder at `max_length` (default: the model's limit)."""
    tok = HFTokenizer(path, max_length=max_length or 512)
    limit = _hf_limit(tok)
    length = max_length or limit or 512
    tok.max_length = length
    return TextCut(column, tok, length, key, limit)


def _clip_length(path: str) -> int:
    from transformers import AutoConfig

    return int(
        AutoConfig.from_pretrained(path, local_files_only=True).text_config.max_position_embeddings
    )


def text_cuts(
    cfg: Config, train_texts: list[str], tokenizer: Tokenizer | None = None
) -> list[TextCut]:
    """Every (text column, tokenizer) pair of the run `cfg` describes.

    Args:
        cfg: the run config.
        train_texts: the train split's texts (the built-in tokenizer's vocabulary source).
        tokenizer: the run's tokenizer when already built (else built here, as `train` does).
    """
    default = inspect.signature(HFTextEncoder.__init__).parameters["max_length"].default
    cuts: dict[tuple[str, str], TextCut] = {}
    for name, tower in cfg.model.towers.items():
        for column, enc in tower.streams.items():
            if not is_text_column(column):
                continue
            key = f"model.towers.{name}.streams.{column}.options.max_length"
            if enc.type in HF_TEXT_ENCODERS:
                path = enc.pretrained or minilm_path(f"model.towers.{name}.streams.{column}")
                length = int(enc.options.get("max_length", default))
                cuts[(column, key)] = hf_cut(column, path, length, key)
            elif enc.type == HF_CLIP_ENCODER and enc.pretrained:
                length = int(enc.options.get("max_length") or _clip_length(enc.pretrained))
                cuts[(column, key)] = hf_cut(column, enc.pretrained, length, key)
            else:  # the run's tokenizer; the encoder's own max_length option wins
                length = int(enc.options.get("max_length") or 0)
                if not length:
                    key, length = "model.tokenizer.max_length", cfg.model.tokenizer.max_length
                if tokenizer is None:
                    tokenizer = build_tokenizer(cfg.model.tokenizer, train_texts)
                cuts[(column, key)] = TextCut(column, tokenizer, length, key)
    return list(cuts.values())
