"""The update monitor: the update-to-weight ratio ||w_after - w_before|| / ||w_before|| per module.

How far one optimizer step moves each module, relative to its size, is the learning
rate's real scale: AdamW moves every weight by about lr per step whatever the gradient's
size, so the ratio is about lr / rms(w). Healthy runs sit around 1e-4 to 1e-2 per step
(the rule of thumb of Karpathy's "CS231n: babysitting the learning process", ~1e-3);
far below, nothing is learned in the run's length; far above, each step rewrites the
weights. The gradient norm cannot say this: Adam divides it out.

Measured only on cadence steps: the trainable weights are copied to the CPU right before
the optimizer step (at AFTER_BACKWARD, after the non-finite gate) and compared with the
weights after it (at BATCH_END). The step and the weights are not touched. Modules are the
doctor's groups (`signals.module_group`); loss parameters form `criterion`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor, nn
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import Monitor
from contrastkit.events import State


def weights_before(params: Iterable[tuple[str, nn.Parameter]]) -> dict[str, Tensor]:
    """CPU float copies of the trainable parameters (the reference of one step's update)."""
    return {name: p.detach().to("cpu", copy=True).float() for name, p in params if p.requires_grad}


def update_ratios(
    params: Iterable[tuple[str, nn.Parameter]], before: dict[str, Tensor]
) -> dict[str, float]:
    """||w - w_before|| / ||w_before|| per module group, over the parameters in `before`.

    A group whose weights were all zero before the step (e.g. biases at init) has no
    scale to compare with and is left out.
    """
    delta: dict[str, float] = {}
    norm: dict[str, float] = {}
    for name, p in params:
        w0 = before.get(name)
        if w0 is None:
            continue
        group = sig.module_group(name)
        w1 = p.detach().to("cpu").float()
        delta[group] = delta.get(group, 0.0) + float((w1 - w0).pow(2).sum())
        norm[group] = norm.get(group, 0.0) + float(w0.pow(2).sum())
    return {g: math.sqrt(delta[g] / norm[g]) for g in delta if norm[g] > 0}


class UpdateMonitor(Monitor):
    """`update_ratio/<module>` of the optimizer step on every cadence step."""

    name = "updates"

    def __init__(self, every: int = 25) -> None:
        super().__init__(every)
        self._before: dict[str, Tensor] = {}
        self._before_step = -1

    @override
    def on_after_backward(self, state: State) -> None:
        # Fires after the non-finite gate: a skipped step takes no snapshot.
        if state.step % self.every != 0 or state.step == self._last_step:
            return
        self._before = weights_before(sig.named_parameters(state.model, state.criterion))
        self._before_step = state.step

    @override
    def on_batch_end(self, state: State) -> None:
        step = state.step - 1  # the step just taken
        if step != self._before_step or not self.due(step):
            return
        ratios = update_ratios(sig.named_parameters(state.model, state.criterion), self._before)
        self._before, self._before_step = {}, -1
        self.record(state, step, {f"update_ratio/{g}": v for g, v in ratios.items()})
