"""`hf_clip`: one CLIP / SigLIP folder gives both towers, their heads and the temperature."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from contrastkit.config import LossConfig, ModelConfig
from contrastkit.errors import ConfigError
from contrastkit.losses import build_loss
from contrastkit.models import build_model
from contrastkit.models.encoders.hf_clip import with_pretrained_logits
from helpers.hf_toys import tiny_bert, tiny_clip

TEXTS = ["a photo of a cat", "a diagram of the heart", "two dogs"]


def _model(folder):
    enc = {"type": "hf_clip", "pretrained": str(folder)}
    cfg = {"towers": {"image": {"streams": {"image": enc}}, "text": {"streams": {"text": enc}}}}
    return build_model(
        ModelConfig.model_validate(cfg),
        tokenizer=None,
        input_specs={"image": (3, 16, 16), "text": ()},
    ).eval()


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_defaults_are_the_zero_shot_model(tmp_path, kind) -> None:
    from transformers import AutoTokenizer, CLIPModel, SiglipModel

    folder = tiny_clip(tmp_path / kind, kind)
    model = _model(folder)
    ref = (CLIPModel if kind == "clip" else SiglipModel).from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    images = torch.rand(3, 3, 16, 16) * 2 - 1  # contrastkit pixels, (x - 0.5) / 0.5
    pixels = model.towers["image"].encoders["image"].prep(images)
    padding = "max_length" if kind == "siglip" else "longest"
    ids = tok(TEXTS, padding=padding, max_length=24, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model({"image": images, "text": TEXTS})
        if kind == "clip":
            img = ref.visual_projection(ref.vision_model(pixel_values=pixels).pooler_output)
            txt = ref.text_projection(ref.text_model(**ids).pooler_output)
        else:
            img = ref.vision_model(pixel_values=pixels).pooler_output
            txt = ref.text_model(input_ids=ids["input_ids"]).pooler_output
    # No projection is added: the embeddings are the model's own, normalised.
    assert not list(model.towers["image"].projection.parameters())
    torch.testing.assert_close(out.towers["image"].embedding, F.normalize(img, dim=-1))
    torch.testing.assert_close(out.towers["text"].embedding, F.normalize(txt, dim=-1))
    # The two towers hold different halves; no parameter is counted twice.
    n_ref = sum(p.numel() for p in ref.parameters()) - (2 if kind == "siglip" else 1)
    assert sum(p.numel() for p in model.parameters()) == n_ref


def test_learned_scale_and_bias_start_the_objective(tmp_path) -> None:
    clip_model = _model(tiny_clip(tmp_path / "clip", "clip"))
    loss = LossConfig.model_validate(
        {"objectives": [{"type": "clip", "towers": ["image", "text"]}]}
    )
    crit = build_loss(with_pretrained_logits(loss, clip_model))
    assert crit.objectives["contrastive"].logit_scale.item() == pytest.approx(3.0)
    siglip_model = _model(tiny_clip(tmp_path / "siglip", "siglip"))
    loss = LossConfig.model_validate(
        {"objectives": [{"type": "siglip", "towers": ["image", "text"]}]}
    )
    crit = build_loss(with_pretrained_logits(loss, siglip_model))
    params = dict(crit.named_parameters())
    assert params["objectives.contrastive.logit_scale"].item() == pytest.approx(2.5)
    assert params["objectives.contrastive.logit_bias"].item() == pytest.approx(-7.0)
    # A value the user set is kept.
    mine = LossConfig.model_validate(
        {"objectives": [{"type": "clip", "towers": ["image", "text"], "temperature": 0.1}]}
    )
    crit = build_loss(with_pretrained_logits(mine, clip_model))
    assert crit.objectives["contrastive"].logit_scale.item() == pytest.approx(math.log(10.0))


def test_not_a_dual_model(tmp_path) -> None:
    with pytest.raises(
        ConfigError, match=r"model.towers.image.streams.image.pretrained: .*'bert' model; hf_clip"
    ):
        _model(tiny_bert(tmp_path / "bert"))


def test_lora_and_layer_decay_reach_both_halves(tmp_path) -> None:
    pytest.importorskip("peft")
    from contrastkit.train.lora import apply_lora
    from contrastkit.train.optim.groups import layer_decay_scales

    model = _model(tiny_clip(tmp_path / "clip", "clip"))
    scales = layer_decay_scales(model, 0.5)
    for side in ("image", "text"):
        p = f"towers.{side}.encoders.{side}.model"
        assert scales[f"{p}.encoder.layers.0"] == 0.25
        assert scales[f"{p}.encoder.layers.1"] == 0.5
        assert scales[f"{p}.embeddings"] == 0.125
    assert apply_lora(model, ["q_proj", "v_proj"], r=2, alpha=4, dropout=0.0) == [
        "towers.image.encoders.image",
        "towers.text.encoders.text",
    ]
    lora = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    assert lora == 2 * 2 * 2 * (2 * 32 + 32 * 2)  # halves x layers x targets x (A + B)
