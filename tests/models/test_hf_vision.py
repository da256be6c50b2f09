"""`hf_vision`: the model's own pixel preprocessing, pooling, and clear errors."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders import build_encoder
from helpers.hf_toys import MEAN, STD, tiny_bert, tiny_clip, tiny_vit

WHERE = "model.towers.image.streams.image"


def _enc(path, **options):
    cfg = EncoderConfig(type="hf_vision", pretrained=str(path), options=options)
    return build_encoder((1, 8, 8), cfg, None, where=WHERE).eval()


def test_vit_sees_pixels_normalised_its_way(tmp_path) -> None:
    from transformers import ViTModel

    folder = tiny_vit(tmp_path / "vit")
    enc = _enc(folder)
    # contrastkit pixels: grey 8x8 in (x - 0.5) / 0.5
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    raw = (x * 0.5 + 0.5).expand(-1, 3, -1, -1)
    raw = torch.nn.functional.interpolate(raw, size=(16, 16), mode="bilinear", align_corners=False)
    pixels = (raw - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    ref = ViTModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = enc(x)
        want = ref(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(out.tokens, want)
    torch.testing.assert_close(out.pooled, want[:, 0])  # auto = CLS for ViT
    assert enc.width == 32 and enc.pretrained and not enc.embedding_output
    mean = _enc(folder, pool="mean")
    with torch.no_grad():
        torch.testing.assert_close(mean(x).pooled, want[:, 1:].mean(1))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_vision_half_of_a_dual_model_uses_its_pooler(tmp_path, kind) -> None:
    folder = tiny_clip(tmp_path / kind, kind)
    enc = _enc(folder)
    from transformers import CLIPVisionModel, SiglipVisionModel

    cls = CLIPVisionModel if kind == "clip" else SiglipVisionModel
    ref = cls.from_pretrained(folder).eval()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    with torch.no_grad():
        want = ref(pixel_values=enc.prep(x)).pooler_output
        torch.testing.assert_close(enc(x).pooled, want)


def test_dinov2_pooler(tmp_path) -> None:
    enc = _enc(tiny_vit(tmp_path / "dino", "dinov2"))
    assert enc.pool == "pooler"
    with torch.no_grad():
        out = enc(torch.zeros(1, 1, 8, 8))
    assert out.pooled.shape == (1, 32) and out.tokens.shape == (1, 5, 32)


def test_errors_name_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=rf"{WHERE}.pretrained: .*missing is not a local"):
        _enc(tmp_path / "missing")
    with pytest.raises(
        ConfigError, match=rf"{WHERE}.pretrained: .* holds a 'bert' model, not a vision"
    ):
        _enc(tiny_bert(tmp_path / "bert"))
    with pytest.raises(ConfigError, match=rf"{WHERE}.options: pool must be"):
        _enc(tiny_vit(tmp_path / "vit"), pool="max")
