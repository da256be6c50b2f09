"""MultitaskLoss on a hand-built ModelOutput: terms, weights, stats, parameter names."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.config import LossConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.losses import LOSSES, ClipLoss, ClipObjective, ContrastiveResult, build_loss
from contrastkit.models.outputs import ModelOutput, TowerOutput


def _tower(emb: torch.Tensor) -> TowerOutput:
    return TowerOutput(tokens=emb[:, None], pooled=emb, embedding=emb)


def _output() -> ModelOutput:
    x = torch.eye(2, requires_grad=True)  # two orthogonal rows
    logits = torch.zeros(2, 1, 4, requires_grad=True)
    return ModelOutput(
        towers={"image": _tower(x), "text": _tower(x * 1.0)},
        heads={
            "captioning": {"logits": logits, "targets": torch.tensor([[1], [-100]])},
            "classification": {"logits": torch.zeros(2, 3, requires_grad=True)},
        },
    )


def _cfg(**extra) -> LossConfig:
    return LossConfig.model_validate(
        {
            "objectives": [
                {"type": "clip", "towers": ["image", "text"], "temperature": 0.5},
                {"type": "siglip", "name": "sig", "towers": ["image", "text"], "weight": 0.0},
                {"type": "triplet", "name": "tri", "towers": ["image"], "weight": 0.25},
            ],
            "captioning": {"weight": 0.5},
            "classification": {"weight": 0.1},
            **extra,
        }
    )


BATCH = {"group_ids": torch.tensor([0, 1]), "label": torch.tensor([2, -1])}


def test_terms_weights_total_and_stats() -> None:
    loss = build_loss(_cfg())
    out = loss(_output(), BATCH)
    clip_value = math.log(1 + math.exp(-2))  # scale 2, orthogonal unit rows
    assert out.terms["contrastive"].item() == pytest.approx(clip_value, rel=1e-6)
    assert out.terms["captioning"].item() == pytest.approx(math.log(4), rel=1e-6)
    assert out.terms["classification"].item() == pytest.approx(math.log(3), rel=1e-6)
    # Triplet: no anchor has a positive, so 0; siglip weight 0 is reported raw, not added.
    assert out.terms["tri"].item() == 0.0
    assert out.terms["sig"].item() > 0 and not out.terms["sig"].requires_grad
    expected = clip_value + 0.5 * math.log(4) + 0.1 * math.log(3)
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    assert out.weights == {
        "contrastive": 1.0,
        "sig": 0.0,
        "tri": 0.25,
        "captioning": 0.5,
        "classification": 0.1,
    }
    assert out.stats["contrastive/logit_scale"] == pytest.approx(2.0)
    assert out.stats["contrastive/pos_sim"] == pytest.approx(1.0)
    assert out.stats["contrastive/neg_sim"] == pytest.approx(0.0)
    assert out.stats["sig/logit_bias"] == pytest.approx(-10.0)
    assert out.stats["tri/triplets"] == 0.0
    assert isinstance(out.results["contrastive"], ContrastiveResult)
    out.total.backward()


def test_explicit_weights_override_config() -> None:
    out = build_loss(_cfg())(_output(), BATCH, weights={"contrastive": 0.0, "captioning": 1.0})
    assert out.total.item() == pytest.approx(math.log(4), rel=1e-6)
    assert "classification" in out.terms  # reported even with weight 0 (absent = 0)


def test_temperature_parameters_are_named_for_no_weight_decay() -> None:
    names = {n for n, _ in build_loss(_cfg()).named_parameters()}
    assert names == {
        "objectives.contrastive.logit_scale",
        "objectives.sig.logit_scale",
        "objectives.sig.logit_bias",
    }


def test_contrastive_on_plain_embeddings() -> None:
    loss = build_loss(_cfg())
    emb = {
        "image": F.normalize(torch.randn(4, 3), dim=1),
        "text": F.normalize(torch.randn(4, 3), dim=1),
    }
    terms, results = loss.contrastive(emb, {"group_ids": torch.tensor([0, 0, 1, 1])})
    assert set(terms) == set(results) == {"contrastive", "sig", "tri"}
    assert results["tri"].stats["triplets"] > 0


def test_missing_tower_and_group_ids_are_user_errors() -> None:
    loss = build_loss(_cfg())
    with pytest.raises(ConfigError, match="objectives.0.towers"):
        loss.contrastive({"image": torch.eye(2)}, BATCH)
    with pytest.raises(DataError, match="group_ids"):
        loss.contrastive({"image": torch.eye(2), "text": torch.eye(2)}, {})


def test_distillation_uses_teacher_extras() -> None:
    cfg = _cfg(distillation={"weight": 1.0, "temperature": 0.5})
    output = _output()
    output.extras = {"teacher:image": torch.eye(2), "teacher:text": torch.eye(2)}
    out = build_loss(cfg)(output, BATCH)
    p = F.softmax(torch.eye(2) / 0.5, 1)
    assert out.terms["distillation"].item() == pytest.approx(
        -(p * p.log()).sum(1).mean().item(), rel=1e-6
    )


def test_registry_validates_and_builds_each_objective(monkeypatch) -> None:
    assert {"clip", "siglip", "triplet"} <= set(LOSSES.names())
    built = []

    class Quarter(ClipObjective):
        def build(self) -> nn.Module:
            built.append(self.name)
            return ClipLoss(init_temperature=0.25)

    monkeypatch.setitem(LOSSES._entries, "clip", Quarter)
    cfg = _cfg()
    assert type(cfg.objectives[0]) is Quarter  # validated by the registered model
    loss = build_loss(cfg)
    assert built == ["contrastive"]
    assert loss.objectives["contrastive"].scale().item() == pytest.approx(4.0)
