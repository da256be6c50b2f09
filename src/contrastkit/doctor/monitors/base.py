"""The monitor base: cadence, history, `signals.jsonl` output, state_dict, and `probe_mode`.

`probe_mode` lives here because it is what makes a monitor an observer: any monitor that
runs its own forward (interference under accumulation, drift) does it inside it, so the
training RNG stream and the model's mode are left as they were.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from typing_extensions import override

from contrastkit.events import Callback, Event, State

SIGNALS_FILE = "signals.jsonl"
MAX_NAMES = 10  # parameter names listed per record


log = logging.getLogger(__name__)


class Monitor(Callback):
    """Base: cadence, history, `signals.jsonl` output, state_dict."""

    name = "monitor"
    # Events this monitor needs on steps off its cadence too (LossMonitor counts non-finite
    # losses every step). A host that owns the loop (the engine) fires every event on every
    # step; the watcher (doctor/hosts/watcher.py) fires off-cadence steps only to these.
    every_step: frozenset[Event] = frozenset()

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
