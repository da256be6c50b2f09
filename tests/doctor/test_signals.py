from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrastkit.doctor import signals as sig


@pytest.mark.parametrize(
    ("name", "group", "backbone"),
    [
        ("towers.image.encoders.image.conv.weight", "towers.image.encoders.image", True),
        ("towers.text.fusion.gate.weight", "towers.text.fusion", True),
        ("towers.text.projection.weight", "towers.text.projection", False),
        ("captioning.decoder.0.weight", "captioning", False),
        ("criterion.logit_scale", "criterion", False),
    ],
)
def test_module_group(name, group, backbone):
    assert sig.module_group(name) == group
    assert sig.is_backbone(group) is backbone


def test_grad_norms_and_ratio_by_hand():
    enc, proj = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1))
    enc.grad = torch.tensor([3.0, 4.0])
    proj.grad = torch.tensor([10.0])
    params = [
        ("towers.a.encoders.x.w", enc),
        ("towers.a.projection.w", proj),
        ("classifier.w", nn.Parameter(torch.zeros(1))),
    ]
    norms = sig.grad_norms(params)
    assert norms == pytest.approx(
        {"towers.a.encoders.x": 5.0, "towers.a.projection": 10.0, "classifier": 0.0}
    )
    assert sig.backbone_head_ratio(norms) == pytest.approx(0.5)


def test_param_drift_by_hand():
    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    params = [("towers.a.encoders.x.w", p)]
    snap = sig.param_snapshot(params)
    assert sig.param_drift(params, snap) == {"towers.a.encoders.x": 0.0}
    with torch.no_grad():
        p += torch.tensor([0.0, 0.5])
    assert sig.param_drift(params, snap)["towers.a.encoders.x"] == pytest.approx(0.1)  # 0.5 / 5


def test_similarity_stats_geometric():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    s = sig.similarity_stats(a, b, torch.tensor([0, 1, 2]))
    # positives: cos(a0,b0)=1, cos(a1,b1)=1, cos(a2,b2)=0 -> 2/3
    assert s["pos_sim"] == pytest.approx(2 / 3)
    # negatives: (a0,b1)=0 (a0,b2)=1 (a1,b0)=0 (a1,b2)=0 (a2,b0)=0 (a2,b1)=1 -> 2/6
    assert s["neg_sim"] == pytest.approx(1 / 3)
    assert s["gap"] == pytest.approx(1 / 3)
    assert s["batch_r1"] == pytest.approx(2 / 3)  # a2's best match is b1 (a negative)


def test_collapse_stats_constant_and_orthonormal():
    const = sig.collapse_stats(torch.ones(8, 4))
    assert const["std"] == pytest.approx(0.0, abs=1e-7)
    assert const["effective_rank"] == pytest.approx(1.0, abs=1e-4)
    eye = sig.collapse_stats(torch.eye(4))
    assert eye["effective_rank"] == pytest.approx(4.0, abs=1e-4)
    assert eye["std"] == pytest.approx(math.sqrt(0.25 - 0.0625))
    assert eye["std_ratio"] == pytest.approx(2 * math.sqrt(0.1875))


def test_embedding_drift():
    x = torch.randn(5, 3)
    assert sig.embedding_drift(x, x)["drift"] == pytest.approx(0.0, abs=1e-6)
    d = sig.embedding_drift(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert d["cosine"] == pytest.approx(0.0) and d["l2"] == pytest.approx(math.sqrt(2))


def test_gradient_cosines_on_shared_params_only():
    g = torch.tensor([1.0, 2.0])
    grads = {
        "a": [g, torch.tensor([5.0]), None],
        "b": [-g, None, torch.tensor([7.0])],
        "c": [g, torch.tensor([0.0]), None],
    }
    out = sig.gradient_cosines(grads)
    assert out["shared_params"]["count"] == 2  # params 0 (a,b,c) and 1 (a,c); not 2
    # on params 0 and 1: a = [1,2,5], b = [-1,-2,0], c = [1,2,0]
    assert out["norm"]["a"] == pytest.approx(math.sqrt(30))
    assert out["cosine"]["a|b"] == pytest.approx(-5 / (math.sqrt(30) * math.sqrt(5)))
    assert out["cosine"]["b|c"] == pytest.approx(-1.0)
