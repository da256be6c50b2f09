"""LoRA through peft, layer-wise lr decay, and checkpoints that hold only what was trained."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import ModelConfig
from contrastkit.errors import ConfigError
from contrastkit.models import build_model
from contrastkit.train.checkpoint import state_tensors
from contrastkit.train.lora import apply_lora, check_base, weights_hash
from contrastkit.train.optim.groups import build_optimizer, layer_decay_scales
from helpers.hf_toys import tiny_bert

pytest.importorskip("peft")
TEXTS = ["def add(a, b): return a + b", "Return the sum."]
SPECS = {"text": (), "text_code": ()}


def _model(folder, **projection):
    enc = {"type": "hf_text", "pretrained": str(folder)}
    towers = {
        "doc": {"streams": {"text": enc}, "projection": projection},
        "code": {"streams": {"text_code": enc}, "projection": projection},
    }
    torch.manual_seed(0)
    cfg = ModelConfig.model_validate({"embed_dim": 16, "towers": towers})
    return build_model(cfg, tokenizer=None, input_specs=SPECS).eval()


def _embed(model):
    with torch.no_grad():
        return model({"text": TEXTS, "text_code": TEXTS}).towers["doc"].embedding


def test_adapters_train_only_low_rank_matrices_and_start_at_zero(tmp_path) -> None:
    model = _model(tiny_bert(tmp_path / "bert"))
    before = _embed(model)
    assert apply_lora(model, ["query", "value"], r=4, alpha=8, dropout=0.0) == [
        "towers.doc.encoders.text"
    ]  # one siamese encoder
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    lora = {n: v for n, v in trainable.items() if "lora_" in n}
    # 2 layers x {query, value} x (A: 4 x 32 + B: 32 x 4); plus the two 32 -> 16 projections.
    assert sum(lora.values()) == 2 * 2 * (4 * 32 + 32 * 4)
    assert set(trainable) - set(lora) == {
        "towers.doc.projection.net.weight",
        "towers.doc.projection.net.bias",
        "towers.code.projection.net.weight",
        "towers.code.projection.net.bias",
    }
    torch.testing.assert_close(_embed(model), before)  # lora_B = 0: still the base model


def test_checkpoint_holds_only_what_was_trained(tmp_path) -> None:
    folder = tiny_bert(tmp_path / "bert")
    model = _model(folder)
    apply_lora(model, ["query", "value"], r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    tensors = state_tensors.module_tensors("model", model)
    assert not any("base_layer" in k or "word_embeddings" in k for k in tensors)
    assert sum(v.numel() for v in tensors.values()) == 2 * 2 * 256 + 2 * (32 * 16 + 16)
    assert model.base_weights == {
        "towers.doc.encoders.text": {"path": str(folder), "sha256": weights_hash(folder)}
    }
    fresh = _model(folder)
    apply_lora(fresh, ["query", "value"], r=4, alpha=8, dropout=0.0)
    fresh.load_state_dict(state_tensors.sub_state(tensors, "model"))
    torch.testing.assert_close(_embed(fresh), _embed(model))
    # A checkpoint trained on other base weights is refused, naming both folders' hashes.
    other = {"towers.doc.encoders.text": {"path": str(folder), "sha256": "0" * 64}}
    with pytest.raises(ConfigError, match="were trained on the weights"):
        check_base(other, fresh, "step_000002")


def test_targets_that_match_nothing_name_the_key(tmp_path) -> None:
    model = _model(tiny_bert(tmp_path / "bert"))
    with pytest.raises(
        ConfigError, match=r"train.lora.targets: \['q_proj'\] match no module .*query"
    ):
        apply_lora(model, ["q_proj"], r=4, alpha=8, dropout=0.0)


def test_layer_decay(tmp_path) -> None:
    model = _model(tiny_bert(tmp_path / "bert"))
    scales = layer_decay_scales(model, 0.5)
    p = "towers.doc.encoders.text.model"
    assert scales == {
        f"{p}.encoder.layer.0": 0.25,
        f"{p}.encoder.layer.1": 0.5,
        f"{p}.embeddings": 0.125,
    }
    opt = build_optimizer([model], lr=1.0, weight_decay=0.0, lr_scale=scales)
    lr = {n: g["lr"] for g in opt.param_groups for n in g["names"]}
    assert lr[f"{p}.encoder.layer.0.attention.self.query.weight"] == 0.25
    assert lr[f"{p}.embeddings.word_embeddings.weight"] == 0.125
    assert lr["towers.doc.projection.net.weight"] == 1.0
    assert layer_decay_scales(model, None) == {}
    scratch = build_model(
        ModelConfig.model_validate(
            {"towers": {"a": {"streams": {"text": {"type": "builtin_text", "depth": 1}}}}}
        ),
        tokenizer=_tok(),
        input_specs={"text": ()},
    )
    with pytest.raises(ConfigError, match="train.layer_decay: the model has no pretrained"):
        layer_decay_scales(scratch, 0.5)


def _tok():
    from contrastkit.models import BuiltinTokenizer

    return BuiltinTokenizer.train(TEXTS, 100, max_length=8)


def test_a_tower_frozen_for_the_whole_run_is_left_out_too(tmp_path) -> None:
    from contrastkit.config import TrainConfig
    from contrastkit.train.lora import apply_train_lora

    folder = tiny_bert(tmp_path / "bert")
    model = _model(folder, type="none")
    locked = TrainConfig(freeze=["towers.doc.encoders.text"])
    assert apply_train_lora(model, locked) == []
    assert state_tensors.module_tensors("model", model) == {}  # nothing trains in the model
    assert list(model.base_weights) == ["towers.doc.encoders.text"]
    # A phase that unfreezes something makes "frozen for the whole run" uncertain.
    phased = TrainConfig(
        freeze=["towers.doc.encoders.text"],
        phases=[{"until_epoch": 1}, {"unfreeze": ["towers.doc.encoders.text"]}],
    )
    apply_train_lora(model, phased)
    assert model.base_keys == [] and len(state_tensors.module_tensors("model", model)) > 0
