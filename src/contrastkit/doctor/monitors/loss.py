"""The loss monitor: loss terms and their shares, the objectives' statistics, collapse."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from typing_extensions import override

from contrastkit.doctor import signals as sig
from contrastkit.doctor.monitors.base import Monitor
from contrastkit.events import State
from contrastkit.losses.result import result_stats


class LossMonitor(Monitor):
    """Loss terms, weights, weighted shares, temperature/bias, similarity and collapse."""

    name = "loss"

    def __init__(self, every: int = 25, pair: tuple[str, str] | None = None) -> None:
        super().__init__(every)
        self.pair = pair
        self._nonfinite: Tensor | None = None

    @override
    def on_after_loss(self, state: State) -> None:
        if state.loss is None:
            return
        # Every step, without a device sync: count non-finite totals on the device.
        bad = (~torch.isfinite(state.loss.total.detach())).sum()
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
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
        count = int(self._nonfinite) if self._nonfinite is not None else 0
        self._nonfinite = None
        return count

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
