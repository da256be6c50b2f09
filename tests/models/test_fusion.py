"""Fusion variants: shapes, masks and gradient flow to every stream."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import FusionConfig
from contrastkit.models.fusion import ConcatFusion, build_fusion
from contrastkit.models.outputs import EncoderOutput

WIDTHS = {"sequence": 8, "features": 12}


def _streams() -> dict[str, EncoderOutput]:
    torch.manual_seed(0)
    seq = torch.randn(2, 5, 8, requires_grad=True)
    feat = torch.randn(2, 1, 12, requires_grad=True)
    seq_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    return {
        "sequence": EncoderOutput(tokens=seq, pooled=seq.mean(1), mask=seq_mask),
        "features": EncoderOutput(tokens=feat, pooled=feat[:, 0], mask=None),
    }


@pytest.mark.parametrize("kind", ["concat", "gated", "cross_attention"])
def test_fusion_shapes_and_gradients(kind: str) -> None:
    fusion = build_fusion(FusionConfig(type=kind, width=16, heads=2), WIDTHS)
    streams = _streams()
    out = fusion(streams)
    n = 5 if kind == "cross_attention" else 6
    assert fusion.width == 16
    assert out.tokens.shape == (2, n, 16) and out.pooled.shape == (2, 16)
    assert out.mask.shape == (2, n)
    assert out.mask[1].tolist()[:5] == [True, True, False, False, False]
    (out.pooled.sum() + (out.tokens * out.mask.unsqueeze(-1)).sum()).backward()
    for s in streams.values():
        assert s.tokens.grad is not None and s.tokens.grad.abs().sum() > 0


def test_default_width_is_first_stream() -> None:
    assert build_fusion(FusionConfig(), WIDTHS).width == 8


def test_concat_adds_stream_type_embedding() -> None:
    fusion = ConcatFusion({"a": 4, "b": 4}, 4)
    tokens = torch.zeros(1, 1, 4)
    out = fusion(
        {
            "a": EncoderOutput(tokens, tokens[:, 0]),
            "b": EncoderOutput(tokens, tokens[:, 0]),
        }
    )
    # identical inputs, different streams -> tokens differ exactly by the type embeddings
    torch.testing.assert_close(out.tokens[0], fusion.stream_type.detach())


def test_cross_attention_needs_two_streams() -> None:
    with pytest.raises(ValueError, match="two streams"):
        build_fusion(FusionConfig(type="cross_attention"), {"a": 4})
