"""The drift monitor: how far parameters and probe embeddings moved since the start."""

from __future__ import annotations

from typing import Any, cast

from torch import Tensor
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import Monitor, probe_mode
from contrastkit.errors import DataError
from contrastkit.events import State
from contrastkit.protocols import EmbeddingModel


class DriftMonitor(Monitor):
    """Parameter drift per module and probe-embedding drift per tower vs FIT_START.

    The reference is a CPU copy of the weights and of the probe embeddings; both are in
    `state_dict`, so a resumed run measures drift from the original start.
    """

    name = "drift"

    def __init__(self, every: int = 25, towers: list[str] | None = None) -> None:
        super().__init__(every)
        self.towers = towers
        self.param_ref: dict[str, Tensor] = {}
        self.probe_ref: dict[str, Tensor] = {}

    def _probe(self, state: State) -> dict[str, Tensor]:
        if state.probe_batch is None or not hasattr(state.model, "encode"):
            return {}
        towers = self.towers or list(getattr(state.model, "tower_names", []))
        # The engine's model embeds towers (a ContrastiveModel, or a toy with `encode`).
        model = cast(EmbeddingModel, state.model)
        out = {}
        with probe_mode(state.model):
            for t in towers:
                try:
                    out[t] = model.encode(t, state.probe_batch).embedding.detach().float().cpu()
                except (KeyError, DataError):  # the probe batch lacks this tower's inputs
                    continue
        return out

    @override
    def on_fit_start(self, state: State) -> None:
        if not self.param_ref:
            self.param_ref = sig.param_snapshot(sig.named_parameters(state.model))
        if not self.probe_ref:
            self.probe_ref = self._probe(state)

    @override
    def on_batch_end(self, state: State) -> None:
        step = state.step - 1  # the step just trained
        if not self.due(step):
            return
        values: dict[str, Any] = {}
        drift = sig.param_drift(sig.named_parameters(state.model), self.param_ref)
        values.update({f"param_drift/{k}": v for k, v in drift.items()})
        for t, now in self._probe(state).items():
            if t in self.probe_ref and self.probe_ref[t].shape == now.shape:
                for k, v in sig.embedding_drift(now, self.probe_ref[t]).items():
                    values[f"embed_drift/{t}/{k}"] = v
        self.record(state, step, values)

    @override
    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {
            "param_ref": dict(self.param_ref),
            "probe_ref": dict(self.probe_ref),
        }

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.param_ref = dict(state.get("param_ref", {}))
        self.probe_ref = dict(state.get("probe_ref", {}))
