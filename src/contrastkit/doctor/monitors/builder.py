"""The doctor's monitors for a run, built from the `doctor` config section.

`fire` calls callbacks in list order, so the list order is each event's firing order;
it is unchanged from the single-module version.
"""

from __future__ import annotations

from contrastkit.config import Config
from contrastkit.doctor.monitors.base import Monitor
from contrastkit.doctor.monitors.drift import DriftMonitor
from contrastkit.doctor.monitors.gradients import GradientMonitor
from contrastkit.doctor.monitors.interference import InterferenceMonitor
from contrastkit.doctor.monitors.loss import LossMonitor
from contrastkit.doctor.monitors.negatives import NegativesMonitor
from contrastkit.doctor.monitors.optimizer import OptimizerMonitor
from contrastkit.doctor.monitors.updates import UpdateMonitor
from contrastkit.events import Callback


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
        OptimizerMonitor(every, init_from=cfg.model.init_from is not None),
        LossMonitor(every, pair=first_pair(cfg)),
        GradientMonitor(every),
        DriftMonitor(every, towers=list(cfg.model.towers)),
    ]
    if cfg.doctor.interference:
        monitors.insert(2, InterferenceMonitor(every))
    # Appended, so the monitors above keep their firing order.
    monitors.append(UpdateMonitor(every))
    if cfg.loss.objectives:
        monitors.append(
            NegativesMonitor(every, accumulate=cfg.train.accumulate, mode=cfg.train.accumulation)
        )
    return list(monitors)
