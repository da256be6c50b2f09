"""Model assembly: towers, sharing, fusion, heads, module-name prefixes, config errors."""

from __future__ import annotations

import copy

import pytest
import torch

from contrastkit.config import ModelConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.models import BuiltinTokenizer, build_model

TEXTS = ["70% stenosis of the lad", "normal study", "3.5 mm stent"]
TEXT = {"type": "builtin_text", "width": 16, "depth": 1, "heads": 2}
SMALL_CNN = {"type": "cnn", "width": 16, "depth": 1, "options": {"channels": 4}}


def _tok() -> BuiltinTokenizer:
    return BuiltinTokenizer.train(TEXTS, 120, max_length=16)


def _model(cfg: dict, specs: dict, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate(cfg), tokenizer=_tok(), input_specs=specs, **kw)


def _image_text(**extra):
    cfg = {
        "embed_dim": 8,
        "towers": {
            "image": {"streams": {"image": SMALL_CNN}},
            "text": {"streams": {"text": TEXT}},
            "text2": {"share": "text", "projection": {"type": "mlp", "hidden": 12}},
        },
        **extra,
    }
    return _model(cfg, {"image": (1, 8, 8), "text": ()}, num_classes=3)


def test_image_text_forward_and_prefixes() -> None:
    model = _image_text(classification={"tower": "text"})
    batch = {"image": torch.randn(3, 1, 8, 8), "text": TEXTS}
    out = model(batch)
    assert set(out.towers) == {"image", "text", "text2"}
    for t in out.towers.values():
        assert t.embedding.shape == (3, 8)
        torch.testing.assert_close(t.embedding.norm(dim=-1), torch.ones(3))
    assert out.heads["classification"]["logits"].shape == (3, 3)
    names = [n for n, _ in model.named_parameters()]
    for prefix in (
        "towers.image.encoders.image.",
        "towers.image.projection.",
        "towers.text.encoders.text.",
        "towers.text2.projection.",
        "classification.",
    ):
        assert any(n.startswith(prefix) for n in names), prefix
    assert model.tower_names == ["image", "text", "text2"]
    assert model.tower_inputs("text2") == ["text"]
    assert not model.has_captioning


def test_shared_tower_shares_parameters_not_copies() -> None:
    model = _image_text()
    text, text2 = model.towers["text"], model.towers["text2"]
    assert text2.encoders is text.encoders
    assert text2.projection is not text.projection
    # Registered once: no duplicate state_dict keys under the sharing tower.
    assert not any(k.startswith("towers.text2.encoders") for k in model.state_dict())
    out = model({"text": TEXTS})
    assert set(out.towers) == {"text", "text2"}  # image column absent -> image tower skipped
    (out.towers["text"].embedding.sum() + out.towers["text2"].embedding.sum()).backward()
    emb = text.encoders["text"].token_embedding.weight
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    # Same features, different projections.
    torch.testing.assert_close(out.towers["text"].pooled, out.towers["text2"].pooled)


def test_compiled_towers_are_accepted_and_run_compiled() -> None:
    """`torch.compile(tower)` (bench/gpu.py's compiled pass) registers an OptimizedModule:
    the model unwraps it for the tower's attributes and calls it, so the compiled code runs
    and the outputs equal the eager model's."""
    model = _image_text()
    batch = {"image": torch.randn(3, 1, 8, 8), "text": TEXTS}
    with torch.no_grad():
        eager = model(batch)
    graphs: list[int] = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        graphs.append(len(example_inputs))
        return gm.forward

    model.towers["image"] = torch.compile(model.towers["image"], backend=counting_backend)
    with torch.no_grad():
        out = model(batch)
        encoded = model.encode("image", batch)
    assert len(graphs) >= 1  # the compiled forward was traced and called
    for name in ("image", "text", "text2"):
        torch.testing.assert_close(out.towers[name].embedding, eager.towers[name].embedding)
    torch.testing.assert_close(encoded.embedding, eager.towers["image"].embedding)
    assert model.tower_inputs("image") == ["image"]


def test_shared_tower_survives_deepcopy_and_state_dict_round_trip() -> None:
    model = _image_text().eval()
    twin = copy.deepcopy(model)  # what an EMA teacher does
    assert twin.towers["text2"].encoders is twin.towers["text"].encoders
    assert twin.towers["text2"].encoders is not model.towers["text"].encoders
    fresh = _image_text().eval()
    torch.manual_seed(1)
    for p in fresh.parameters():
        p.data.normal_()
    fresh.load_state_dict(model.state_dict())
    batch = {"text": TEXTS}
    torch.testing.assert_close(
        fresh(batch).towers["text2"].embedding, model(batch).towers["text2"].embedding
    )


def test_encode_needs_only_its_inputs() -> None:
    model = _image_text().eval()
    enc = model.encode("image", {"image": torch.randn(2, 1, 8, 8)})
    assert enc.embedding.shape == (2, 8)
    with pytest.raises(DataError, match="image"):
        model.encode("image", {"text": TEXTS})


def test_video_text_with_captioning_and_masked_heads() -> None:
    cfg = {
        "embed_dim": 8,
        "towers": {
            "video": {
                "streams": {
                    "video": {
                        "type": "video",
                        "width": 16,
                        "depth": 1,
                        "heads": 2,
                        "options": {"frame_options": {"channels": 4}, "temporal": "attention"},
                    }
                }
            },
            "text": {"streams": {"text": TEXT}},
        },
        "captioning": {"tower": "video", "width": 16, "depth": 1, "heads": 2},
        "masked": {"tower": "video", "decoder_width": 16},
    }
    model = _model(cfg, {"video": (2, 3, 1, 8, 8), "video_view_mask": (2,)})
    batch = {
        "video": torch.randn(3, 2, 3, 1, 8, 8),
        "video_view_mask": torch.tensor([[True, True], [True, False], [True, False]]),
        "text": TEXTS,
    }
    out = model(batch)
    ids, _ = model.tokenizer.encode(TEXTS)
    caption, masked = out.heads["captioning"], out.heads["masked"]
    assert caption["logits"].shape == (3, ids.shape[1] - 1, model.tokenizer.vocab_size)
    assert caption["targets"].shape == (3, ids.shape[1] - 1)
    assert masked["prediction"].shape == masked["target"].shape == (3, 6, 16)
    assert not (masked["mask"] & ~out.towers["video"].mask).any()
    loss = torch.nn.functional.cross_entropy(
        caption["logits"].flatten(0, 1), caption["targets"].flatten(), ignore_index=-100
    )
    loss.backward()
    assert model.towers["video"].encoders["video"].time_position.grad.abs().sum() > 0
    model.eval()
    captions = model.generate(batch, max_length=4)
    assert len(captions) == 3 and all(isinstance(c, str) for c in captions)
    assert model.has_captioning


def test_keypoints_features_fusion_tower() -> None:
    cfg = {
        "embed_dim": 8,
        "towers": {
            "motion": {
                "streams": {
                    "sequence": {"type": "sequence", "width": 16, "depth": 1, "heads": 2},
                    "features": {"type": "features", "width": 12, "depth": 1},
                },
                "fusion": {"type": "gated", "width": 16},
            },
            "text": {"streams": {"text": TEXT}},
        },
    }
    model = _model(cfg, {"sequence": (5, 3, 2), "features": (4,), "text": ()})
    names = [n for n, _ in model.named_parameters()]
    assert any(n.startswith("towers.motion.fusion.") for n in names)
    batch = {
        "sequence": torch.randn(2, 5, 3, 2),
        "sequence_mask": torch.tensor([[True] * 5, [True, True, False, False, False]]),
        "features": torch.randn(2, 4),
        "text": TEXTS[:2],
    }
    out = model(batch)
    assert out.towers["motion"].tokens.shape == (2, 6, 16)
    assert out.towers["motion"].mask[1].tolist() == [True, True, False, False, False, True]
    out.towers["motion"].embedding.sum().backward()
    enc = model.towers["motion"].encoders
    assert enc["sequence"].embed.weight.grad.abs().sum() > 0
    assert enc["features"].mlp[-1].weight.grad.abs().sum() > 0


def test_missing_column_names_stream_and_columns() -> None:
    cfg = {
        "towers": {"image": {"streams": {"image": SMALL_CNN}}, "text": {"streams": {"text": TEXT}}}
    }
    with pytest.raises(
        ConfigError, match=r"model.towers.image.streams.image.*\['features', 'text'\]"
    ):
        _model(cfg, {"features": (4,), "text": ()})


def test_unknown_option_through_build_model() -> None:
    bad = {**SMALL_CNN, "options": {"chanels": 4}}
    cfg = {"towers": {"image": {"streams": {"image": bad}}, "text": {"streams": {"text": TEXT}}}}
    with pytest.raises(
        ConfigError, match=r"model.towers.image.streams.image.options.chanels.*channels"
    ):
        _model(cfg, {"image": (1, 8, 8)})


def test_classifier_without_classes_is_config_error() -> None:
    cfg = {
        "towers": {"image": {"streams": {"image": SMALL_CNN}}, "text": {"streams": {"text": TEXT}}},
        "classification": {"tower": "image"},
    }
    with pytest.raises(ConfigError, match="num_classes"):
        _model(cfg, {"image": (1, 8, 8)})
