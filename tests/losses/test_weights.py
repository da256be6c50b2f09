"""Term weights: schedule values and phase > schedule > base precedence."""

from __future__ import annotations

import math

import pytest

from contrastkit.config import LossConfig, Phase, WeightSchedule
from contrastkit.errors import ConfigError
from contrastkit.losses.weights import schedule_value, weights_at


def test_constant() -> None:
    assert schedule_value(WeightSchedule(start=0.3), 1000) == 0.3


def test_linear() -> None:
    s = WeightSchedule(kind="linear", start=0.0, end=1.0, steps=10)
    assert [schedule_value(s, i) for i in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]


def test_cosine() -> None:
    s = WeightSchedule(kind="cosine", start=1.0, end=0.0, steps=100)
    assert schedule_value(s, 0) == pytest.approx(1.0)
    assert schedule_value(s, 50) == pytest.approx(0.5)
    assert schedule_value(s, 25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert schedule_value(s, 200) == pytest.approx(0.0)


def test_step() -> None:
    s = WeightSchedule(kind="step", start=1.0, milestones=[10, 20], gamma=0.5)
    assert [schedule_value(s, i) for i in (0, 9, 10, 19, 20, 99)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        0.25,
    ]


def test_linear_without_end_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="end"):
        schedule_value(WeightSchedule(kind="linear", start=1.0), 3)


def _cfg() -> LossConfig:
    return LossConfig.model_validate(
        {
            "objectives": [{"type": "clip", "towers": ["image", "text"], "weight": 1.0}],
            "captioning": {"weight": 0.5},
            "classification": {"weight": 0.2},
            "schedules": {"captioning": {"kind": "linear", "start": 0.0, "end": 1.0, "steps": 10}},
        }
    )


def test_weights_at_precedence() -> None:
    cfg = _cfg()
    assert weights_at(cfg, 5, None) == {
        "contrastive": 1.0,
        "captioning": 0.5,
        "classification": 0.2,
    }
    phase = Phase(weights={"captioning": 0.0, "contrastive": 2.0})
    assert weights_at(cfg, 5, phase) == {
        "contrastive": 2.0,
        "captioning": 0.0,
        "classification": 0.2,
    }


def test_phase_naming_unknown_term() -> None:
    with pytest.raises(ConfigError, match="masked"):
        weights_at(_cfg(), 0, Phase(name="warmup", weights={"masked": 1.0}))
