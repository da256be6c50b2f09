"""An objective registered outside the package is selectable from YAML and trains.

Before objectives were validated through `LOSSES`, the config's closed union rejected
`type: toy_align` even after `@LOSSES.register("toy_align")`.
"""

from __future__ import annotations

from typing import Literal

import pytest
import torch
import yaml
from pydantic import Field
from torch import Tensor, nn

from contrastkit.config import ObjectiveConfig, config_from_dict, dump_config, load_config
from contrastkit.errors import ConfigError
from contrastkit.events import Callback
from contrastkit.losses import LOSSES, ContrastiveResult, build_loss
from contrastkit.train.engine import Engine
from contrastkit.train.engine.parts import EngineParts
from helpers.train_toys import ToyModel, toy_data, toy_loader, toy_train_config


class AlignLoss(nn.Module):
    """Mean ||a_i − b_i||^power over pairs (alignment only, no negatives)."""

    def __init__(self, power: float) -> None:
        super().__init__()
        self.power = power

    def forward(
        self, a: Tensor, b: Tensor, group_ids: Tensor, attributes=None, labels=None
    ) -> ContrastiveResult:
        return ContrastiveResult(loss=(a - b).norm(dim=1).pow(self.power).mean())


@LOSSES.register("toy_align")
class ToyAlign(ObjectiveConfig):
    """`type: toy_align`, the way a user adds an objective: one config model + build()."""

    type: Literal["toy_align"] = "toy_align"
    power: float = Field(2.0, gt=0.0)

    def build(self) -> AlignLoss:
        return AlignLoss(self.power)


YAML = """
name: toy
data: {manifest: "builtin:digits-captions"}
model:
  towers:
    a: {streams: {image: {type: cnn}}}
    b: {streams: {text: {type: builtin_text}}}
loss:
  objectives:
    - {name: align, type: toy_align, towers: [a, b], power: 1.5}
"""


def test_registered_objective_is_selected_from_yaml_and_round_trips(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(YAML)
    cfg = load_config(path)
    objective = cfg.loss.objectives[0]
    assert type(objective) is ToyAlign and objective.power == 1.5
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again.loss.objectives[0] == objective
    with pytest.raises(ConfigError, match=r"loss.objectives.0.power: Input should be greater"):
        load_config(path, ["loss.objectives.0.power=0"])
    with pytest.raises(ConfigError, match=r"loss.objectives.0.margin: unknown key"):
        load_config(path, ["loss.objectives.0.margin=1"])


def test_registered_objective_trains(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(YAML)
    loss_cfg = load_config(path).loss
    criterion = build_loss(loss_cfg)
    assert isinstance(criterion.objectives["align"], AlignLoss)

    class Record(Callback):
        def __init__(self) -> None:
            self.values: list[float] = []

        def on_batch_end(self, state) -> None:
            self.values.append(float(state.loss.terms["align"].detach()))

    torch.manual_seed(0)
    data, record = toy_data(32), Record()
    parts = EngineParts(
        model=ToyModel(),
        criterion=criterion,
        make_loader=lambda epoch, start: toy_loader(
            data, 8, seed=0, epoch=epoch, start_batch=start
        ),
        steps_per_epoch=4,
        weights=lambda step, phase: {"align": 1.0},
        callbacks=[record],
    )
    Engine(toy_train_config(epochs=2), parts, tmp_path / "run").fit()
    # Towers a and b read different inputs; pulling each pair together lowers the loss.
    assert len(record.values) == 8
    assert record.values[-1] < 0.7 * record.values[0]
