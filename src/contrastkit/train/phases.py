"""Training phases: which stretch of training is active, and what entering it changes.

A phase (config `train.phases[i]`) ends at `until_epoch` (epochs are 1-based in the
config: `until_epoch: 5` covers epochs 0..4 of the loop) or `until_step`; the last may run
to the end. Entering a phase sets `requires_grad` by module-name prefix, the loss term
weights and an lr multiplier. The trainable set of phase i is recomputed from scratch
(initial flags, then phases 0..i in order, then `train.freeze`), so a resumed run lands
in exactly the same state as one that walked through the phases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from torch import nn

from contrastkit.config import LossConfig, Phase, WeightSchedule
from contrastkit.train.optim.groups import check_prefixes, matches, named_parameters

WeightsFn = Callable[[int, int], dict[str, float]]


def phase_index(phases: Sequence[Phase], epoch: int, step: int) -> int:
    """Index of the phase active at 0-based `epoch` after `step` optimizer steps."""
    for i, phase in enumerate(phases):
        if phase.until_epoch is not None and epoch < phase.until_epoch:
            return i
        if phase.until_step is not None and step < phase.until_step:
            return i
        if phase.until_epoch is None and phase.until_step is None:
            return i
    return max(0, len(phases) - 1)


def phase_label(phases: Sequence[Phase], index: int) -> str:
    """Human name of a phase: its `name`, else its 1-based number."""
    if not phases:
        return "1"
    return phases[index].name or str(index + 1)


class PhaseController:
    """Applies freezing for a phase and describes what changed.

    Args:
        phases: `train.phases` (may be empty: one implicit phase).
        freeze: `train.freeze`, frozen for the whole run.
        modules: the model and the criterion.

    Raises:
        ConfigError: a prefix names no module (message gives the key path).
    """

    def __init__(
        self, phases: Sequence[Phase], freeze: Sequence[str], modules: Sequence[nn.Module]
    ) -> None:
        check_prefixes(freeze, "train.freeze", modules)
        for i, phase in enumerate(phases):
            check_prefixes(phase.freeze, f"train.phases.{i}.freeze", modules)
            check_prefixes(phase.unfreeze, f"train.phases.{i}.unfreeze", modules)
        self.phases = list(phases)
        self.freeze = list(freeze)
        self.params = named_parameters(modules)
        self.initial = {name: p.requires_grad for name, p in self.params}

    def _set(self, prefix: str, value: bool) -> None:
        for name, p in self.params:
            if matches(name, prefix):
                p.requires_grad_(value)

    def apply(self, index: int) -> None:
        """Set `requires_grad` of every parameter for phase `index`."""
        for name, p in self.params:
            p.requires_grad_(self.initial[name])
        for phase in self.phases[: index + 1]:
            for prefix in phase.freeze:
                self._set(prefix, False)
            for prefix in phase.unfreeze:
                self._set(prefix, True)
        for prefix in self.freeze:
            self._set(prefix, False)

    def lr_scale(self, index: int) -> float:
        """The lr multiplier of phase `index` (1.0 without phases)."""
        return self.phases[index].lr_scale if self.phases else 1.0

    def describe(
        self,
        old: int,
        new: int,
        epoch: int,
        step: int,
        w_old: dict[str, float],
        w_new: dict[str, float],
    ) -> str:
        """e.g. `phase 1 → 2 at epoch 5 (step 40): unfroze classifier; weights classification 0 → 0.3`."""
        phase = self.phases[new]
        parts = []
        if phase.unfreeze:
            parts.append("unfroze " + ", ".join(phase.unfreeze))
        if phase.freeze:
            parts.append("froze " + ", ".join(phase.freeze))
        changed = [
            f"{k} {w_old.get(k, 0.0):g} → {v:g}" for k, v in w_new.items() if w_old.get(k) != v
        ]
        if changed:
            parts.append("weights " + ", ".join(changed))
        if phase.lr_scale != 1.0:
            parts.append(f"lr × {phase.lr_scale:g}")
        head = (
            f"phase {phase_label(self.phases, old)} → {phase_label(self.phases, new)} "
            f"at epoch {epoch} (step {step})"
        )
        return head + (": " + "; ".join(parts) if parts else "")


def schedule_value(s: WeightSchedule, step: int) -> float:
    """Weight of a scheduled term at `step` (local copy of the loss package's rule)."""
    end = s.start if s.end is None else s.end
    t = 1.0 if not s.steps else min(1.0, step / s.steps)
    if s.kind == "constant":
        return s.start
    if s.kind == "linear":
        return s.start + (end - s.start) * t
    if s.kind == "cosine":
        return end + (s.start - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    return s.start * s.gamma ** sum(1 for m in s.milestones if step >= m)


def local_weights_at(cfg: LossConfig, step: int, phase: Phase | None) -> dict[str, float]:
    """Phase override > schedule > base weight (fallback for `losses.weights.weights_at`)."""
    weights = cfg.term_weights()
    for term, schedule in cfg.schedules.items():
        weights[term] = schedule_value(schedule, step)
    if phase is not None:
        weights.update(phase.weights)
    return weights


def make_weights_fn(cfg: LossConfig, phases: Sequence[Phase]) -> WeightsFn:
    """`(step, phase_index) -> term weights`, using the loss package's rule when present."""
    try:
        from contrastkit.losses.weights import weights_at
    except ImportError:
        weights_at = local_weights_at

    def weights(step: int, index: int) -> dict[str, float]:
        return dict(weights_at(cfg, step, phases[index] if phases else None))

    return weights
