"""The temperature ceiling is enforced on the parameter after every optimiser step.

Old behaviour (clamp only in the forward pass): separable data pushes `logit_scale` past
ln(max) with AdamW momentum, where its gradient is exactly 0, so later data that wants a
smaller scale can never bring it back.
"""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.config import LossConfig
from contrastkit.events import Callback
from contrastkit.losses.clip import ClipObjective
from contrastkit.losses.multitask import MultitaskLoss
from contrastkit.train.engine import Engine
from contrastkit.train.engine.parts import EngineParts
from helpers.train_toys import ToyModel, toy_train_config

MAX_SCALE = 10.0
CEILING = math.log(MAX_SCALE)
SEPARABLE_EPOCHS = 2
N, BATCH = 96, 8


def _data(separable: bool) -> dict[str, torch.Tensor]:
    """Separable: both sides identical per pair. Noisy: side b independent of side a."""
    g = torch.Generator().manual_seed(0 if separable else 1)
    x_a = torch.randn(N, 6, generator=g)
    x_b = x_a.clone() if separable else torch.randn(N, 6, generator=g)
    return {"x_a": x_a, "x_b": x_b, "group_ids": torch.arange(N)}


class ScaleLog(Callback):
    def __init__(self) -> None:
        self.steps: list[float] = []
        self.epochs: list[float] = []

    def on_batch_end(self, state) -> None:
        self.steps.append(float(state.criterion.objectives["contrastive"].logit_scale.detach()))

    def on_epoch_end(self, state) -> None:
        self.epochs.append(float(state.criterion.objectives["contrastive"].logit_scale.detach()))


def _run(tmp_path, epochs: int, **train) -> ScaleLog:
    torch.manual_seed(0)
    cfg = toy_train_config(epochs=epochs, lr=0.05, lr_schedule="constant", warmup_steps=0, **train)
    separable, noisy = _data(True), _data(False)

    def loader(epoch: int, start: int):
        data = separable if epoch < SEPARABLE_EPOCHS else noisy
        for b in range(start, N // BATCH):
            yield {k: v[b * BATCH : (b + 1) * BATCH] for k, v in data.items()}

    log = ScaleLog()
    objective = ClipObjective(towers=["a", "b"], temperature=0.125, max_logit_scale=MAX_SCALE)
    parts = EngineParts(
        model=ToyModel(),
        criterion=MultitaskLoss(LossConfig(objectives=[objective])),
        make_loader=loader,
        steps_per_epoch=N // BATCH,
        weights=lambda step, phase: {"contrastive": 1.0},
        callbacks=[log],
    )
    Engine(cfg, parts, tmp_path).fit()
    return log


@pytest.mark.slow
def test_scale_driven_above_the_ceiling_comes_back_down_on_noisy_data(tmp_path) -> None:
    log = _run(tmp_path, epochs=SEPARABLE_EPOCHS + 1)
    # Separable data pins the parameter at the ceiling, never above it.
    assert log.epochs[SEPARABLE_EPOCHS - 1] == pytest.approx(CEILING, abs=1e-6)
    # Noisy data wants a smaller scale, and the live gradient at the ceiling lets it go.
    assert log.epochs[-1] < CEILING - 0.3


@pytest.mark.parametrize(
    "train",
    [
        {"accumulate": 2, "accumulation": "cached"},
        {"accumulate": 2, "accumulation": "naive"},
        {"amp": "bf16"},
    ],
    ids=["cached", "naive", "bf16"],
)
def test_parameter_never_exceeds_the_ceiling_after_a_step(tmp_path, train: dict) -> None:
    log = _run(tmp_path, epochs=SEPARABLE_EPOCHS, **train)
    assert max(log.steps) == pytest.approx(CEILING, abs=1e-6)  # reached, never passed
    assert all(s <= CEILING + 1e-6 for s in log.steps)
