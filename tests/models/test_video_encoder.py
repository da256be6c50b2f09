"""Video encoder: temporal aggregators, multi-view pooling over valid views only."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders import build_encoder

WHERE = "model.towers.video.streams.video"


def _encoder(spec, **options):
    torch.manual_seed(0)
    options.setdefault("frame_options", {"channels": 4})
    cfg = EncoderConfig(type="video", width=8, depth=1, heads=2, options=options)
    return build_encoder(spec, cfg, None, where=WHERE).eval()


@pytest.mark.parametrize("temporal", ["mean", "attention", "transformer"])
def test_temporal_aggregators(temporal: str) -> None:
    enc = _encoder((3, 1, 8, 8), temporal=temporal)
    out = enc(torch.randn(2, 3, 1, 8, 8))
    assert out.tokens.shape == (2, 3, 8) and out.pooled.shape == (2, 8)
    if temporal == "mean":
        torch.testing.assert_close(out.pooled, out.tokens.mean(1))


def test_vit_frame_encoder() -> None:
    enc = _encoder((2, 1, 8, 8), frame_encoder="vit", frame_options={"patch_size": 4})
    assert enc(torch.randn(1, 2, 1, 8, 8)).pooled.shape == (1, 8)


@pytest.mark.parametrize("views", ["mean", "attention"])
def test_multi_view_ignores_padding_views(views: str) -> None:
    enc = _encoder((3, 2, 1, 8, 8), views=views)
    x = torch.randn(2, 3, 2, 1, 8, 8)
    view_mask = torch.tensor([[True, True, False], [True, False, False]])
    out = enc(x, view_mask)
    assert out.tokens.shape == (2, 6, 8)
    assert out.mask.tolist()[1] == [True, True, False, False, False, False]
    changed = x.clone()
    changed[0, 2] = 5.0
    changed[1, 1:] = -3.0
    torch.testing.assert_close(enc(changed, view_mask).pooled, out.pooled)
    if views == "mean":
        # One valid view: the study embedding is that view's clip embedding.
        single = _encoder((2, 1, 8, 8))
        single.load_state_dict(enc.state_dict())
        torch.testing.assert_close(single(x[1:, 0]).pooled, out.pooled[1:])


def test_bad_nested_option_names_path() -> None:
    with pytest.raises(ConfigError, match=rf"{WHERE}.options.frame_options.size"):
        _encoder((2, 1, 8, 8), frame_options={"size": 3})
    with pytest.raises(ConfigError, match="temporal"):
        _encoder((2, 1, 8, 8), temporal="lstm")
