"""Learning-rate schedule: linear warm-up, then cosine / linear / constant decay.

`lr_at` is a pure function of the step (tested against hand values); `LrScheduler`
applies it to an optimizer's groups, times each group's `base_lr` and the active phase's
`lr_scale`, and has a tiny `state_dict` for checkpoints.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Kind = Literal["cosine", "linear", "constant"]


def warmup_steps_for(total_steps: int, warmup_steps: int, warmup_fraction: float) -> int:
    """`warmup_steps` when set, else `warmup_fraction` of the run (rounded)."""
    return warmup_steps if warmup_steps > 0 else int(round(warmup_fraction * total_steps))


def lr_at(step: int, *, total_steps: int, warmup: int, kind: Kind, min_ratio: float) -> float:
    """Multiplier of the base lr for the optimizer step number `step` (0-based).

    Warm-up goes linearly from 1/warmup to 1 over `warmup` steps; afterwards the factor
    decays from 1 to `min_ratio` at `total_steps` (cosine: Loshchilov & Hutter 2017).
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    shape = 1.0 - progress if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * shape


class LrScheduler:
    """Sets `group["lr"] = group["base_lr"] * lr_at(step) * phase_scale` (LambdaLR-like)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        total_steps: int,
        warmup: int,
        kind: Kind = "cosine",
        min_ratio: float = 0.0,
    ) -> None:
        self.optimizer = optimizer
        self.total_steps = total_steps
        self.warmup = warmup
        self.kind: Kind = kind
        self.min_ratio = min_ratio
        self.step_count = 0
        self.phase_scale = 1.0
        for group in optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
        self.apply()

    def factor(self) -> float:
        """The schedule's lr multiplier at the current step (warm-up, then decay), before the phase scale."""
        return lr_at(
            self.step_count,
            total_steps=self.total_steps,
            warmup=self.warmup,
            kind=self.kind,
            min_ratio=self.min_ratio,
        )

    def apply(self) -> None:
        """Write the current lr into every group."""
        f = self.factor() * self.phase_scale
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * f

    def set_phase_scale(self, scale: float) -> None:
        """Set the current phase's lr multiplier and apply it at once."""
        self.phase_scale = scale
        self.apply()

    def step(self) -> None:
        """Advance one optimizer step and write the new lr into every group."""
        self.step_count += 1
        self.apply()

    def get_last_lr(self) -> list[float]:
        """The current lr of every parameter group (the torch scheduler interface)."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """The step count and phase scale, for a checkpoint."""
        return {"step_count": self.step_count, "phase_scale": self.phase_scale}

    def load_state_dict(self, state: dict) -> None:
        """Restore the step count and phase scale, and write the lr they give."""
        self.step_count = int(state["step_count"])
        self.phase_scale = float(state["phase_scale"])
        self.apply()
