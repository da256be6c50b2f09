"""Heads through the HEADS registry: one name per head, old keys migrated, a head added
from outside the package with one class and one registration."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from contrastkit.config import AuxTermConfig, Config, HeadConfig, ModelConfig
from contrastkit.errors import ConfigError
from contrastkit.losses import build_loss
from contrastkit.models import BuiltinTokenizer, build_model
from contrastkit.models.outputs import TermSum, TowerOutput
from contrastkit.registry import HEADS

TOWERS = {
    "image": {"streams": {"image": {"type": "cnn", "width": 16, "depth": 1}}},
    "text": {"streams": {"text": {"type": "builtin_text", "width": 16, "depth": 1, "heads": 2}}},
}
TEXTS = ["a cat", "a dog", "two birds"]


class NormHead(nn.Module):
    """Predicts each row's pooled-feature norm from the pooled features."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 1)

    def run(self, tower: TowerOutput, batch: Mapping[str, Any], tokenizer: Any) -> dict:
        return {"prediction": self.linear(tower.pooled)[:, 0], "target": tower.pooled.norm(dim=1)}


@HEADS.register("norm_regression")
class NormRegressionConfig(HeadConfig):
    def build(self, width: int, tokenizer: Any, num_classes: int | None) -> NormHead:
        return NormHead(width)

    @staticmethod
    def loss(outputs: dict, batch: Mapping[str, Any], term: AuxTermConfig) -> TermSum:
        err = (outputs["prediction"] - outputs["target"].detach()).pow(2)
        return TermSum.over(err.sum(), torch.ones_like(err, dtype=torch.bool))


def _config(**model: Any) -> dict:
    return {
        "data": {"manifest": "builtin:digits-captions"},
        "model": {"embed_dim": 8, "towers": TOWERS, **model},
    }


def test_a_head_registered_outside_the_package_is_configured_built_and_trained() -> None:
    cfg = Config.model_validate(
        {**_config(norm_regression={"tower": "image"}), "loss": {"norm_regression": {"weight": 2}}}
    )
    assert type(cfg.model.heads["norm_regression"]) is NormRegressionConfig
    assert cfg.loss.term_weights() == {"contrastive": 1.0, "norm_regression": 2.0}
    torch.manual_seed(0)
    tok = BuiltinTokenizer.train(TEXTS, 60, max_length=8)
    model = build_model(cfg.model, tokenizer=tok, input_specs={"image": (1, 8, 8), "text": ()})
    assert isinstance(model.norm_regression, NormHead)  # module prefix = term name
    batch = {"image": torch.randn(3, 1, 8, 8), "text": TEXTS, "group_ids": torch.arange(3)}
    out = model(batch)
    loss = build_loss(cfg.loss)(out, batch)
    pred, target = (
        out.heads["norm_regression"]["prediction"],
        out.heads["norm_regression"]["target"],
    )
    assert float(loss.terms["norm_regression"].detach()) == pytest.approx(
        float((pred - target).pow(2).mean()), rel=1e-6
    )
    loss.total.backward()
    assert model.norm_regression.linear.weight.grad.abs().sum() > 0


def test_loss_term_without_its_head_is_an_error() -> None:
    with pytest.raises(ValueError, match="loss.norm_regression is set but model.norm_regression"):
        Config.model_validate({**_config(), "loss": {"norm_regression": {"weight": 1}}})


def test_head_errors_name_the_term_key() -> None:
    with pytest.raises(ValueError, match=r"captioning.width\n.*greater than or equal to 8"):
        ModelConfig.model_validate({"towers": TOWERS, "captioning": {"tower": "image", "width": 2}})
    with pytest.raises(ValueError, match="masked.tower names no tower 'audio'"):
        ModelConfig.model_validate({"towers": TOWERS, "masked": {"tower": "audio"}})


def test_classifier_key_and_module_prefix_are_migrated_with_a_warning() -> None:
    data = _config(classifier={"tower": "image", "num_classes": 3})
    data["loss"] = {"classification": {"weight": 0.5}}
    data["train"] = {"freeze": ["classifier"], "phases": [{"unfreeze": ["classifier.net"]}]}
    with pytest.warns(FutureWarning) as caught:
        cfg = Config.model_validate(data)
    messages = " ".join(str(w.message) for w in caught)
    assert "model.classifier is deprecated; use model.classification" in messages
    assert "module prefix 'classifier' is deprecated" in messages
    assert list(cfg.model.heads) == ["classification"]
    assert cfg.train.freeze == ["classification"]
    assert cfg.train.phases[0].unfreeze == ["classification.net"]
    both = _config(classifier={"tower": "image"}, classification={"tower": "image"})
    with pytest.raises(ValueError, match="model.classifier and model.classification"):
        Config.model_validate(both)


def test_checkpoint_with_the_old_classifier_prefix_loads() -> None:
    cfg = ModelConfig.model_validate({"towers": TOWERS, "classification": {"tower": "image"}})
    tok = BuiltinTokenizer.train(TEXTS, 60, max_length=8)
    specs = {"image": (1, 8, 8), "text": ()}
    torch.manual_seed(0)
    saved = build_model(cfg, tokenizer=tok, input_specs=specs, num_classes=3).state_dict()
    old = {k.replace("classification.", "classifier.", 1): v for k, v in saved.items()}
    assert any(k.startswith("classifier.") for k in old)
    torch.manual_seed(1)
    model = build_model(cfg, tokenizer=tok, input_specs=specs, num_classes=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.load_state_dict(old)
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_without_classes_the_classification_head_is_a_config_error() -> None:
    cfg = ModelConfig.model_validate({"towers": TOWERS, "classification": {"tower": "image"}})
    tok = BuiltinTokenizer.train(TEXTS, 60, max_length=8)
    with pytest.raises(ConfigError, match="model.classification needs num_classes"):
        build_model(cfg, tokenizer=tok, input_specs={"image": (1, 8, 8), "text": ()})
