"""How one optimizer step runs (AMP, loss scaling, DDP sync, event hooks) and on what rows.

Shared by every accumulation mode: `StepContext` carries the engine's choices into the
step, `split_batch` cuts the step's batch into micro-batches, and `backward` skips a loss
that has no graph (a step whose weighted terms are all zero).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from contrastkit.losses.result import LossOutput
from contrastkit.models.outputs import ModelOutput

ContextFn = Callable[[], contextlib.AbstractContextManager]


def null_context() -> contextlib.AbstractContextManager:
    """A context that does nothing (no AMP, no DDP `no_sync`)."""
    return contextlib.nullcontext()


def _identity(t: Tensor) -> Tensor:
    return t


@dataclass
class StepContext:
    """How a step runs: AMP, loss scaling, DDP sync and the engine's event hooks.

    Attributes:
        autocast: returns the autocast context (AMP) or a null context.
        scale: GradScaler.scale for fp16, identity otherwise.
        no_sync: DDP `model.no_sync` (skips the gradient all-reduce) or a null context.
        add_teacher: adds the teacher's embeddings to a model output before the loss
            (distillation), or None.
        on_forward: called after every forward that builds a graph (AFTER_FORWARD).
        on_loss: called once with the step's LossOutput (AFTER_LOSS).
        replay_rng: rewind the RNG before replaying a micro-batch (only off in tests).
    """

    autocast: ContextFn = null_context
    scale: Callable[[Tensor], Tensor] = _identity
    no_sync: ContextFn = null_context
    add_teacher: Callable[[ModelOutput, dict], ModelOutput] | None = None
    on_forward: Callable[[ModelOutput, dict], None] | None = None
    on_loss: Callable[[LossOutput], None] | None = None
    replay_rng: bool = True

    def forward(self, model: nn.Module, batch: dict) -> ModelOutput:
        """The model's output for `batch`, with `add_teacher` and `on_forward` applied."""
        output = model(batch)
        if self.add_teacher is not None:
            output = self.add_teacher(output, batch)
        if self.on_forward is not None:
            self.on_forward(output, batch)
        return output


def batch_size_of(batch: dict) -> int:
    """Rows in a batch (from `group_ids`, else the first tensor)."""
    if "group_ids" in batch:
        return len(batch["group_ids"])
    return next(len(v) for v in batch.values() if isinstance(v, Tensor | list))


def split_batch(batch: dict, parts: int) -> list[dict]:
    """Split a batch into `parts` consecutive micro-batches (sizes differ by at most 1).

    Tensors and lists with one entry per row are sliced; anything else is shared.
    """
    size = batch_size_of(batch)
    parts = min(parts, size)
    bounds = [i * size // parts for i in range(parts + 1)]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        micro = {}
        for key, value in batch.items():
            rowwise = (
                isinstance(value, Tensor | list)
                and len(value) == size
                and (not isinstance(value, Tensor) or value.ndim > 0)
            )
            micro[key] = value[lo:hi] if rowwise else value
        out.append(micro)
    return out


def backward(loss: Tensor | None) -> None:
    """Back-propagate `loss` unless it is absent or has no graph."""
    if loss is not None and loss.requires_grad:
        loss.backward()
