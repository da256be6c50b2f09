"""Contract test over every registered encoder (except pretrained text), and option checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders import ENCODERS, build_encoder, masked_mean
from contrastkit.models.tokenizer import BuiltinTokenizer

PRETRAINED = {"hf_text", "minilm", "hf_vision", "hf_clip"}  # tests/models/test_hf_*.py
WIDTH = 16
B = 3

# name -> (input spec, options, input builder)
CASES: dict[str, tuple[tuple[int, ...], dict[str, Any], Any]] = {
    "builtin_text": ((), {}, lambda: ["70% stenosis", "a cat", "3.5 mm lad"]),
    "cnn": ((1, 8, 8), {"channels": 4}, lambda: torch.randn(B, 1, 8, 8)),
    "vit": ((3, 8, 8), {"patch_size": 4}, lambda: torch.randn(B, 3, 8, 8)),
    "video": ((2, 1, 8, 8), {"frame_options": {"channels": 4}}, lambda: torch.randn(B, 2, 1, 8, 8)),
    "sequence": (
        (5, 3, 2),
        {"jitter": 1, "noise": 0.1, "mask_ratio": 0.3},
        lambda: torch.randn(B, 5, 3, 2),
    ),
    "features": ((6,), {}, lambda: torch.randn(B, 6)),
}
TOKENS = {"builtin_text": None, "cnn": 16, "vit": 4, "video": 2, "sequence": 5, "features": 1}


def _tokenizer() -> BuiltinTokenizer:
    return BuiltinTokenizer.train(["70% stenosis", "a cat"], 100, max_length=16)


def _build(name: str, depth: int = 1):
    spec, options, _ = CASES[name]
    cfg = EncoderConfig(type=name, width=WIDTH, depth=depth, heads=2, options=options)
    return build_encoder(spec, cfg, _tokenizer(), where=f"model.towers.t.streams.{name}")


def test_every_registered_encoder_has_a_contract_case() -> None:
    assert set(ENCODERS.names()) - PRETRAINED == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("train", [True, False])
def test_encoder_contract(name: str, train: bool) -> None:
    torch.manual_seed(0)
    encoder = _build(name).train(train)
    x = CASES[name][2]()
    out = encoder(x)
    assert encoder.width == WIDTH
    assert out.pooled.shape == (B, WIDTH)
    assert out.tokens.shape[0] == B and out.tokens.shape[2] == WIDTH
    if TOKENS[name] is not None:
        assert out.tokens.shape[1] == TOKENS[name]
    if out.mask is not None:
        assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == torch.bool
    assert out.pooled.dtype == torch.float32 and torch.isfinite(out.pooled).all()
    (out.pooled.square().sum() + out.tokens.sum()).backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_unknown_option_names_key_path_and_allowed() -> None:
    cfg = EncoderConfig(type="vit", width=WIDTH, heads=2, options={"patchsize": 4})
    with pytest.raises(ConfigError) as err:
        build_encoder((1, 8, 8), cfg, None, where="model.towers.image.streams.image")
    msg = str(err.value)
    assert "model.towers.image.streams.image.options.patchsize" in msg
    assert "patch_size" in msg and "pool" in msg


def test_bad_option_value_is_config_error() -> None:
    cfg = EncoderConfig(type="vit", width=WIDTH, heads=2, options={"patch_size": 3})
    with pytest.raises(ConfigError, match="model.towers.image.streams.image.options"):
        build_encoder((1, 8, 8), cfg, None, where="model.towers.image.streams.image")


def test_unknown_encoder_type_lists_registered() -> None:
    with pytest.raises(ConfigError, match="model.towers.t.streams.x.type.*cnn"):
        build_encoder((1,), EncoderConfig(type="nope"), None, where="model.towers.t.streams.x")


def test_masked_mean_hand_computed() -> None:
    tokens = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]], dtype=torch.float64)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_mean(tokens, mask).tolist() == [[2.0], [0.0]]
    assert masked_mean(tokens, None).tolist() == [[104.0 / 3], [4.0]]


def test_text_encoder_accepts_ids_and_cls_pool() -> None:
    tok = _tokenizer()
    cfg = EncoderConfig(type="builtin_text", width=WIDTH, depth=1, heads=2, options={"pool": "cls"})
    enc = build_encoder((), cfg, tok, where="w").eval()
    ids, mask = tok.encode(["a cat", "70%"])
    from_text, from_ids = enc(["a cat", "70%"]), enc(ids, mask)
    torch.testing.assert_close(from_text.pooled, from_ids.pooled)
    torch.testing.assert_close(from_text.pooled, from_text.tokens[:, 0])


def test_features_token_grid_respects_mask() -> None:
    cfg = EncoderConfig(type="features", width=WIDTH, depth=1, heads=2)
    enc = build_encoder((4, 3), cfg, None, where="w").eval()
    x = torch.randn(2, 4, 3)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    changed = x.clone()
    changed[0, 2:] = 50.0  # padding tokens
    a, b = enc(x, mask), enc(changed, mask)
    torch.testing.assert_close(a.pooled, b.pooled)
    assert a.tokens.shape == (2, 4, WIDTH)
