"""Doctor monitors: engine callbacks that record signals every `doctor.every` steps.

Monitors observe and never steer: gradients are read (never written), per-objective
gradients come from `torch.autograd.grad` (which leaves `.grad` alone), probe forwards
run in eval mode inside `torch.random.fork_rng()` so the training RNG stream — and with
it exact resume — is unchanged. Each monitor keeps its records (flat dicts with `step`
and `monitor`) in `history`, restores them through `state_dict`, and appends them to
`run_dir/signals.jsonl` on rank 0. The application turns that file into findings at the
end of the run (`doctor.run.diagnose_run`), so train, `doctor run` and the report agree.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import Config
from contrastkit.doctor import signals as sig
from contrastkit.errors import DataError
from contrastkit.events import Callback, State
from contrastkit.losses.result import result_stats
from contrastkit.protocols import EmbeddingModel

SIGNALS_FILE = "signals.jsonl"
MAX_NAMES = 10  # parameter names listed per record


log = logging.getLogger(__name__)


class Monitor(Callback):
    """Base: cadence, history, `signals.jsonl` output, state_dict."""

    name = "monitor"

    def __init__(self, every: int = 25) -> None:
        self.every = every
        self.history: list[dict[str, Any]] = []
        self._last_step = -1

    def due(self, step: int) -> bool:
        """True once per step, on steps 0, every, 2*every, ..."""
        return step % self.every == 0 and step != self._last_step

    def record(self, state: State, step: int, values: dict[str, Any]) -> dict[str, Any]:
        """Append a signals record for `step` (history, and signals.jsonl on rank 0); returns it."""
        self._last_step = step
        rec = {
            "step": step,
            "epoch": state.epoch,
            "phase": state.phase,
            "monitor": self.name,
            **values,
        }
        self.history.append(rec)
        if state.is_main and state.run_dir is not None:
            path = Path(state.run_dir) / SIGNALS_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(rec, default=float) + "\n")
        return rec

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history], "last_step": self._last_step}

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state.get("history", [])]
        self._last_step = int(state.get("last_step", -1))


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
        groups = (state.batch or {}).get("group_ids")
        if self.pair and groups is not None and all(t in emb for t in self.pair):
            a, b = emb[self.pair[0]], emb[self.pair[1]]
            if a.shape[0] == b.shape[0] == len(groups):
                values.update(
                    {f"align/{k}": v for k, v in sig.similarity_stats(a, b, groups).items()}
                )
        return values


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


@contextmanager
def probe_mode(model: nn.Module, *, grad: bool = False):
    """Eval mode, a forked RNG and (unless `grad`) no grad; restores the previous mode
    afterwards, so a measurement never touches training's RNG stream or mode."""
    was_training = model.training
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.set_grad_enabled(grad):
        model.eval()
        try:
            yield
        finally:
            model.train(was_training)


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


def temperature_params(criterion: nn.Module) -> dict[int, str]:
    """id -> name of the loss's scalar temperature / bias parameters."""
    return {
        id(p): name
        for name, p in criterion.named_parameters()
        if name.rsplit(".", 1)[-1] in ("logit_scale", "logit_bias", "temperature")
    }


class OptimizerMonitor(Monitor):
    """Optimizer sanity: params missing from the optimizer, decay on temperature, lr."""

    name = "optimizer"

    def _sanity(self, state: State, event: str) -> None:
        params = sig.named_parameters(state.model, state.criterion)
        in_opt = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        missing = [n for n, p in params if p.requires_grad and id(p) not in in_opt]
        temps = temperature_params(state.criterion)
        decayed = [
            {"param": temps[id(p)], "group": i, "weight_decay": float(g.get("weight_decay", 0.0))}
            for i, g in enumerate(state.optimizer.param_groups)
            for p in g["params"]
            if id(p) in temps
        ]
        values: dict[str, Any] = {
            "event": event,
            "not_in_optimizer": len(missing),
            "not_in_optimizer_names": missing[:MAX_NAMES],
            "temperature_groups": decayed,
            "max_steps": state.max_steps,
            "batch_size": state.batch_size,
        }
        values.update(_trainable_share(params))
        self.record(state, state.step, values)
        self._last_step = -1  # the lr record of this step may still follow

    @override
    def on_fit_start(self, state: State) -> None:
        self._sanity(state, "fit_start")

    @override
    def on_phase_change(self, state: State) -> None:
        self._sanity(state, "phase_change")

    @override
    def on_batch_end(self, state: State) -> None:
        step = state.step - 1
        if not self.due(step):
            return
        groups = state.optimizer.param_groups
        lrs = [float(g["lr"]) for g in groups]
        # The scheduled base rate (train.lr x schedule), without per-group multipliers: new
        # parameters (temperature) get a floor multiplier, so max lr alone would hide an lr
        # that is zero for every weight of the model.
        base = [
            float(g["lr"]) / float(g.get("lr_scale", 1.0)) for g in groups if g.get("lr_scale", 1.0)
        ]
        values = {
            "event": "lr",
            "lr/max": max(lrs, default=0.0),
            "lr/min": min(lrs, default=0.0),
            "lr/base": max(base, default=0.0),
        }
        # The temperature's own rate: `temperature_frozen` asks whether it could have moved.
        temperature = [
            float(g["lr"])
            for g in groups
            if any(str(n).endswith("logit_scale") for n in g.get("names", ()))
        ]
        if temperature:
            values["lr/temperature"] = max(temperature)
        self.record(state, step, values)


def first_pair(cfg: Config) -> tuple[str, str] | None:
    """Towers of the first two-tower objective (the pair whose alignment is measured)."""
    for o in cfg.loss.objectives:
        if len(o.towers) == 2:
            return (o.towers[0], o.towers[1])
    return None


def build_monitors(cfg: Config) -> list[Callback]:
    """The doctor's callbacks for a run (empty when `doctor.enabled` is false)."""
    if not cfg.doctor.enabled:
        return []
    every = cfg.doctor.every
    monitors: list[Monitor] = [
        OptimizerMonitor(every),
        LossMonitor(every, pair=first_pair(cfg)),
        GradientMonitor(every),
        DriftMonitor(every, towers=list(cfg.model.towers)),
    ]
    if cfg.doctor.interference:
        monitors.insert(2, InterferenceMonitor(every))
    return list(monitors)
