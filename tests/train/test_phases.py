"""Which phase is active, and the local term-weight rule."""

from __future__ import annotations

import pytest

from contrastkit.config import LossConfig, Phase, WeightSchedule
from contrastkit.train.phases import local_weights_at, phase_index, schedule_value


def test_phase_index_by_epoch_and_step() -> None:
    phases = [Phase(until_epoch=2), Phase(until_step=30), Phase()]
    assert [phase_index(phases, e, s) for e, s in [(0, 0), (1, 25), (2, 25), (2, 30), (9, 99)]] == [
        0,
        0,
        1,
        2,
        2,
    ]
    assert phase_index([], 3, 3) == 0


def test_weights_phase_over_schedule_over_base() -> None:
    cfg = LossConfig.model_validate(
        {
            "objectives": [{"type": "clip", "towers": ["a", "b"]}],
            "classification": {"weight": 0.4},
            "schedules": {
                "classification": {"kind": "linear", "start": 0.0, "end": 1.0, "steps": 10}
            },
        }
    )
    assert local_weights_at(cfg, 5, None) == {"contrastive": 1.0, "classification": 0.5}
    assert local_weights_at(cfg, 5, Phase(weights={"classification": 0.0})) == {
        "contrastive": 1.0,
        "classification": 0.0,
    }


@pytest.mark.parametrize(
    ("schedule", "step", "want"),
    [
        (WeightSchedule(kind="cosine", start=1.0, end=0.0, steps=4), 2, 0.5),
        (WeightSchedule(kind="step", start=1.0, milestones=[2, 4], gamma=0.5), 4, 0.25),
        (WeightSchedule(kind="linear", start=1.0, end=3.0, steps=4), 8, 3.0),
    ],
)
def test_schedule_values(schedule: WeightSchedule, step: int, want: float) -> None:
    assert schedule_value(schedule, step) == pytest.approx(want)
