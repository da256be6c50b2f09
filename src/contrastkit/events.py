"""Engine events and the callback base class.

The loop, with the events it fires::

    fire(FIT_START)
    for epoch in epochs:
        fire(EPOCH_START)
        for batch in loader:
            fire(BATCH_START)
            output = model(batch)           # (cached accumulation: per micro-batch)
            fire(AFTER_FORWARD)             # state.output is set
            loss = criterion(output, batch)
            fire(AFTER_LOSS)                # state.loss is set
            loss.total.backward()
            if loss or a gradient is non-finite (on any rank): skip the step, no more events
            fire(AFTER_BACKWARD)            # gradients present, before clipping/step
            clip; optimizer.step(); scheduler.step()
            fire(BATCH_END)                 # state.step incremented, state.metrics has logged values
            if phase changes: fire(PHASE_CHANGE)
        checkpoint                           # first, so a kill while evaluating loses nothing
        if eval due: evaluate(); fire(EVAL_END)   # state.eval_metrics set; then best.json
        fire(EPOCH_END)
    fire(FIT_END)

Monitors observe; they never change the model, optimizer or data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from contrastkit.losses.result import LossOutput
    from contrastkit.models.outputs import ModelOutput


class Event(str, Enum):
    """The points of the training loop where callbacks are called (see the module docstring)."""

    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    BATCH_START = "batch_start"
    AFTER_FORWARD = "after_forward"
    AFTER_LOSS = "after_loss"
    AFTER_BACKWARD = "after_backward"
    BATCH_END = "batch_end"
    PHASE_CHANGE = "phase_change"
    EVAL_END = "eval_end"
    EPOCH_END = "epoch_end"
    FIT_END = "fit_end"


@dataclass
class State:
    """What the engine exposes to callbacks. Callbacks must treat it as read-only.

    Attributes:
        model: the contrastive model (nn.Module, unwrapped from DDP).
        criterion: the multitask loss module (holds temperature / bias parameters).
        optimizer: the optimizer.
        run_dir: the run directory.
        step: optimizer steps done; epoch: current epoch (0-based).
        batch: current batch (dict); output / loss: last forward / loss result.
        phase: index of the active phase; phase_name: its name.
        metrics: scalars logged at the last BATCH_END; eval_metrics: at the last EVAL_END.
        probe_batch: a fixed batch of training rows for drift measurements.
        is_main: True on rank 0 (write files only there).
        batch_size: global batch size (micro-batch * accumulate * world size).
    """

    model: torch.nn.Module
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    run_dir: Path
    step: int = 0
    epoch: int = 0
    max_steps: int = 0
    batch: dict | None = None
    output: ModelOutput | None = None
    loss: LossOutput | None = None
    phase: int = 0
    phase_name: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    probe_batch: dict | None = None
    is_main: bool = True
    batch_size: int = 0


class Callback:
    """Base class: override the `on_<event>` methods you need. `state_dict` lets a resumed
    run keep the callback's history."""

    def on_fit_start(self, state: State) -> None:
        """Once, before the first batch."""

    def on_epoch_start(self, state: State) -> None:
        """At the start of every epoch."""

    def on_batch_start(self, state: State) -> None:
        """Before the forward pass of every batch."""

    def on_after_forward(self, state: State) -> None:
        """After the forward pass; `state.output` is set."""

    def on_after_loss(self, state: State) -> None:
        """After the loss; `state.loss` is set."""

    def on_after_backward(self, state: State) -> None:
        """After backward, before clipping and the optimizer step; gradients are present."""

    def on_batch_end(self, state: State) -> None:
        """After the optimizer step; `state.step` is incremented and `state.metrics` logged."""

    def on_phase_change(self, state: State) -> None:
        """When the training phase changes (after that step's `batch_end`)."""

    def on_eval_end(self, state: State) -> None:
        """After an evaluation; `state.eval_metrics` is set."""

    def on_epoch_end(self, state: State) -> None:
        """At the end of every epoch, after its checkpoint and evaluation."""

    def on_fit_end(self, state: State) -> None:
        """Once, after the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        """What the callback must keep across a resume (saved in every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        return None


def fire(callbacks: list[Callback], event: Event, state: State) -> None:
    """Call `on_<event>` on every callback, in order."""
    for cb in callbacks:
        getattr(cb, f"on_{event.value}")(state)
