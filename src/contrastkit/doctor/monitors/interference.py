"""The interference monitor: per-objective gradients on shared parameters."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import Monitor, probe_mode
from contrastkit.events import State


class InterferenceMonitor(Monitor):
    """Per-objective gradient norms and cosines on shared parameters (at AFTER_LOSS).

    Uses `torch.autograd.grad(..., retain_graph=True)` per weighted term, so the engine's
    backward still finds its graph and `.grad` is untouched. Under accumulation
    (`cached`/`naive`) the step's terms arrive detached — the graph is per micro-batch or
    already freed — so the same measurement runs on the fixed probe batch instead: one
    extra forward in eval mode with a forked RNG (training's dropout stream and batch-norm
    statistics are left alone) every `every` steps. Skipped under DDP (the probe loss would
    all-gather across ranks outside the engine's collective schedule).
    """

    name = "interference"

    @override
    def on_after_loss(self, state: State) -> None:
        if state.loss is None or not self.due(state.step):
            return
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return
        weights = state.loss.weights
        weighted = [k for k, v in state.loss.terms.items() if weights.get(k, 0.0) > 0]
        terms = _graph_terms(state.loss.terms, weights)
        if len(weighted) >= 2 and len(terms) < 2:  # detached: accumulation
            self._probe_measure(state, weights)
            return
        self._measure(state, terms, weights)

    def _probe_measure(self, state: State, weights: dict[str, float]) -> None:
        if state.probe_batch is None:
            return
        with probe_mode(state.model, grad=True):
            output = state.model(state.probe_batch)
            loss = state.criterion(output, state.probe_batch, weights)
            self._measure(state, _graph_terms(loss.terms, weights), weights)

    def _measure(self, state: State, terms: dict[str, Tensor], weights: dict[str, float]) -> None:
        if len(terms) < 2:
            return
        params = [p for _, p in sig.named_parameters(state.model) if p.requires_grad]
        grads: dict[str, list[Tensor | None]] = {}
        try:
            for k, v in terms.items():
                grads[k] = list(
                    torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
                )
        except RuntimeError:  # graph already freed
            return
        result = sig.gradient_cosines(grads)
        weighted = {k: weights[k] * n for k, n in result["norm"].items()}
        total = sum(weighted.values())
        values: dict[str, Any] = {"shared_params": int(result["shared_params"]["count"])}
        for k, n in result["norm"].items():
            values[f"grad_term/{k}"] = n
            values[f"grad_share/{k}"] = weighted[k] / total if total > 0 else 0.0
        values.update({f"grad_cos/{pair}": c for pair, c in result["cosine"].items()})
        self.record(state, state.step, values)


def _graph_terms(terms: dict[str, Any], weights: dict[str, float]) -> dict[str, Tensor]:
    """The weighted terms that still carry an autograd graph."""
    return {
        k: v
        for k, v in terms.items()
        if isinstance(v, Tensor) and v.requires_grad and weights.get(k, 0.0) > 0
    }
