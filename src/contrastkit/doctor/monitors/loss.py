"""The loss monitor: loss terms and their shares, the objectives' statistics, collapse."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import Monitor
from contrastkit.events import Event, State
from contrastkit.losses.result import result_stats


class LossMonitor(Monitor):
    """Loss terms, weights, weighted shares, temperature/bias, similarity and collapse."""

    name = "loss"
    every_step = frozenset({Event.AFTER_LOSS})  # the non-finite count

    def __init__(self, every: int = 25, pair: tuple[str, str] | None = None) -> None:
        super().__init__(every)
        self.pair = pair
        # Totals since the last record, counted when recorded: appending a detached scalar
        # is the whole per-step cost (no kernel, no device sync).
        self._totals: list[Tensor] = []

    @override
    def on_after_loss(self, state: State) -> None:
        if state.loss is None:
            return
        self._totals.append(state.loss.total.detach())
        if self.due(state.step):
            self.record(state, state.step, self.measure(state))

    @override
    def on_fit_end(self, state: State) -> None:
        # Non-finite steps since the last record would otherwise never reach the file.
        count = self.flush_nonfinite()
        if count:
            self.record(state, state.step, {"event": "fit_end", "nonfinite_steps": count})

    def flush_nonfinite(self) -> int:
        """Non-finite steps counted since the last call (one device sync), and reset the count."""
        totals, self._totals = self._totals, []
        if not totals:
            return 0
        return int((~torch.isfinite(torch.stack([t.reshape(()) for t in totals]))).sum())

    def measure(self, state: State) -> dict[str, Any]:
        """This step's loss record: total, each term with its weight and share, the objectives' and embedding statistics."""
        out = state.loss
        assert out is not None
        raw = {
            k: float(v.detach()) if isinstance(v, Tensor) else float(v)
            for k, v in out.terms.items()
        }
        values: dict[str, Any] = {
            "loss/total": float(out.total.detach()),
            "nonfinite_steps": self.flush_nonfinite(),
        }
        weighted = {k: float(out.weights.get(k, 0.0)) * v for k, v in raw.items()}
        norm = sum(abs(v) for v in weighted.values())
        for k, v in raw.items():
            values[f"loss/{k}"] = v
            values[f"weight/{k}"] = float(out.weights.get(k, 0.0))
            values[f"share/{k}"] = abs(weighted[k]) / norm if norm > 0 else 0.0
        values.update(result_stats(out.results))
        values.update({k: float(v) for k, v in out.stats.items()})
        values.update(self._embedding_stats(state))
        return values

    def _embedding_stats(self, state: State) -> dict[str, float]:
        if state.output is None:
            return {}
        emb = state.output.embeddings
        values: dict[str, float] = {}
        for tower, e in emb.items():
            if e.dim() == 2 and e.shape[0] >= 2:
                for k, v in sig.collapse_stats(e).items():
                    values[f"collapse/{tower}/{k}"] = v
                # B rows span at most B dimensions: the rank rule needs the batch, too.
                values[f"collapse/{tower}/rows"] = float(e.shape[0])
        groups = (state.batch or {}).get("group_ids")
        if self.pair and groups is not None and all(t in emb for t in self.pair):
            a, b = emb[self.pair[0]], emb[self.pair[1]]
            if a.shape[0] == b.shape[0] == len(groups):
                values.update(
                    {f"align/{k}": v for k, v in sig.similarity_stats(a, b, groups).items()}
                )
        return values
