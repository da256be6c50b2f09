"""Toy configs, bundles, model, criterion and a mini event loop for the doctor tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.config import Config, config_from_dict
from contrastkit.data.manifest import Row, SkippedRow
from contrastkit.events import Callback, Event, State, fire
from contrastkit.losses.result import ContrastiveResult, LossOutput
from contrastkit.models.outputs import ModelOutput, TowerOutput

TOWERS = {
    "image": {"streams": {"image": {"type": "cnn"}}},
    "text": {"streams": {"text": {"type": "builtin_text"}}},
}


def make_config(overrides: list[str] | None = None, **sections: Any) -> Config:
    data = {
        "data": {"manifest": "m.jsonl", "batch_size": 4},
        "model": {"towers": TOWERS},
        "loss": {"objectives": [{"type": "clip", "towers": ["image", "text"]}]},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return config_from_dict(data, overrides=overrides)


def row(
    i: int,
    group: str,
    split: str = "train",
    text: str | None = None,
    image: Path | None = None,
    **extra: Any,
) -> Row:
    values: dict[str, Any] = dict(extra)
    paths: dict[str, Any] = {}
    if text is not None:
        values["text"] = text
    if image is not None:
        values["image"] = image.name
        paths["image"] = image
    return Row(id=f"r{i}", group=group, split=split, values=values, line=i + 1, paths=paths)


@dataclass
class ToySplit:
    rows: list[Row]


@dataclass
class ToyBundle:
    splits: dict[str, ToySplit]
    skipped: list[SkippedRow] = field(default_factory=list)


def bundle(rows: list[Row], skipped: list[SkippedRow] | None = None) -> ToyBundle:
    splits: dict[str, list[Row]] = {}
    for r in rows:
        splits.setdefault(r.split, []).append(r)
    return ToyBundle({k: ToySplit(v) for k, v in splits.items()}, list(skipped or []))


class ToyModel(nn.Module):
    """Two towers `image` and `text` over 4-d inputs; `collapse=True` outputs constants."""

    tower_names = ["image", "text"]

    def __init__(self, dim: int = 3, collapse: bool = False, rng_in_encode: bool = False) -> None:
        super().__init__()
        self.towers = nn.ModuleDict(
            {
                t: nn.ModuleDict(
                    {
                        "encoders": nn.ModuleDict({t: nn.Linear(4, 4)}),
                        "projection": nn.Linear(4, dim),
                    }
                )
                for t in self.tower_names
            }
        )
        self.dropout = nn.Dropout(0.5)
        self.collapse = collapse
        self.rng_in_encode = rng_in_encode

    def encode(self, tower: str, batch: dict) -> TowerOutput:
        x = batch[tower]
        if self.rng_in_encode:
            x = x + torch.rand_like(x)  # consumes the RNG like dropout / masking would
        pooled = self.dropout(self.towers[tower]["encoders"][tower](x))
        emb = self.towers[tower]["projection"](pooled)
        if self.collapse:
            emb = emb * 0 + torch.ones_like(emb)
        return TowerOutput(
            tokens=pooled[:, None], pooled=pooled, embedding=F.normalize(emb, dim=-1)
        )

    def forward(self, batch: dict) -> ModelOutput:
        return ModelOutput(towers={t: self.encode(t, batch) for t in self.tower_names})


class ToyCriterion(nn.Module):
    """CLIP loss `contrastive` plus a `captioning` term = aux_sign * contrastive + 3:
    with aux_sign=-1 its gradient is exactly the opposite of the contrastive one."""

    def __init__(self, weights: dict[str, float] | None = None, aux_sign: float = -1.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(2.0))
        self.weights = weights or {"contrastive": 1.0, "captioning": 1.0}
        self.aux_sign = aux_sign

    def forward(
        self, output: ModelOutput, batch: dict, weights: dict[str, float] | None = None
    ) -> LossOutput:
        weights = dict(self.weights if weights is None else weights)
        a, b = output.towers["image"].embedding, output.towers["text"].embedding
        scale = self.logit_scale.exp()
        logits = scale * a @ b.T
        target = torch.arange(len(a))
        clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        aux = self.aux_sign * clip + 3.0
        terms = {"contrastive": clip, "captioning": aux}
        total = sum(weights[k] * v for k, v in terms.items())
        result = ContrastiveResult(loss=clip, logit_scale=scale.detach())
        return LossOutput(
            total=total, terms=terms, weights=weights, results={"contrastive": result}
        )


def make_batch(seed: int = 0, n: int = 4) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.randn(n, 4, generator=g),
        "text": torch.randn(n, 4, generator=g),
        "group_ids": torch.arange(n),
    }


def make_state(
    model: nn.Module, criterion: nn.Module, run_dir: Path | None, lr: float = 0.1, **kw: Any
) -> State:
    params = list(model.parameters()) + list(criterion.parameters())
    opt = torch.optim.SGD(params, lr=lr)
    return State(
        model=model,
        criterion=criterion,
        optimizer=opt,
        run_dir=run_dir,
        probe_batch=make_batch(99),
        batch_size=4,
        max_steps=kw.pop("max_steps", 10),
        **kw,
    )


def run_steps(callbacks: list[Callback], state: State, steps: int) -> None:
    """The engine's loop in miniature, firing the same events in the same order."""
    fire(callbacks, Event.FIT_START, state)
    for i in range(steps):
        state.batch = make_batch(i)
        fire(callbacks, Event.BATCH_START, state)
        state.output = state.model(state.batch)
        fire(callbacks, Event.AFTER_FORWARD, state)
        state.loss = state.criterion(state.output, state.batch)
        fire(callbacks, Event.AFTER_LOSS, state)
        state.loss.total.backward()
        fire(callbacks, Event.AFTER_BACKWARD, state)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        fire(callbacks, Event.BATCH_END, state)
    fire(callbacks, Event.FIT_END, state)


def grads_of(model: nn.Module) -> list[Tensor | None]:
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]
