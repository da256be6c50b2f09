"""The gradient monitor: per-module gradient norms and what is (not) trainable.

`_trainable_share` is also the optimizer monitor's: both say which share of each module
group trains, one beside its gradients, the other beside the optimizer's groups.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import MAX_NAMES, Monitor
from contrastkit.events import State


def _trainable_share(params: list[tuple[str, nn.Parameter]]) -> dict[str, float]:
    counts: dict[str, list[int]] = {}
    for name, p in params:
        c = counts.setdefault(sig.module_group(name), [0, 0])
        c[0] += p.numel() if p.requires_grad else 0
        c[1] += p.numel()
    return {f"trainable/{g}": a / max(b, 1) for g, (a, b) in counts.items()}


class GradientMonitor(Monitor):
    """Per-module gradient norms, backbone/head ratio, frozen params holding a gradient."""

    name = "gradients"

    @override
    def on_after_backward(self, state: State) -> None:
        if not self.due(state.step):
            return
        params = sig.named_parameters(state.model, state.criterion)
        norms = sig.grad_norms(params)
        values: dict[str, Any] = {f"grad_norm/{k}": v for k, v in norms.items()}
        ratio = sig.backbone_head_ratio(norms)
        if ratio is not None:
            values["grad_ratio/backbone_head"] = ratio
        values.update(_trainable_share(params))
        frozen = [
            n
            for n, p in params
            if not p.requires_grad and p.grad is not None and bool(p.grad.any())
        ]
        values["frozen_with_grad"] = len(frozen)
        if frozen:
            values["frozen_with_grad_names"] = frozen[:MAX_NAMES]
        self.record(state, state.step, values)
