"""What the engine trains: the ready-made components a run hands to `Engine`.

Components come in ready-made, so the engine runs the real model and a toy one alike;
`contrastkit.app.run` wires the real ones, the tests wire toys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from contrastkit.events import Callback
from contrastkit.losses.multitask import MultitaskLoss
from contrastkit.train.ema import EMA
from contrastkit.train.phases import WeightsFn


@dataclass
class EngineParts:
    """What the engine trains and with what.

    Attributes:
        model / criterion: the modules (criterion: a `MultitaskLoss`, or a module with its
            `forward`, `contrastive` and `auxiliary`).
        make_loader: `(epoch, start_batch) -> iterable of step batches` (this rank's rows of
            micro-batch x accumulate per batch), deterministic given the epoch.
        steps_per_epoch: optimizer steps in one epoch.
        weights: `(step, phase_index) -> term weights`.
        evaluate: `model -> flat metrics` on the validation split, or None.
        select_metric: metric that picks the best checkpoint when `train.select_metric` is unset.
        config: the whole run config (saved in checkpoints to name changed keys on resume).
        add_teacher: adds the teacher's embeddings (EMA or a fixed teacher) to model
            outputs for the distillation term, or None.
        ema: EMA model updated after each step, or None.
    """

    model: nn.Module
    criterion: MultitaskLoss
    make_loader: Callable[[int, int], Iterable[dict]]
    steps_per_epoch: int
    weights: WeightsFn
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    select_metric: str | None = None
    callbacks: Sequence[Callback] = ()
    config: Any = None
    probe_batch: dict | None = None
    add_teacher: Callable | None = None
    ema: EMA | None = None
