"""Doctor monitors: engine callbacks that record signals every `doctor.every` steps.

Monitors observe and never steer: gradients are read (never written), per-objective
gradients come from `torch.autograd.grad` (which leaves `.grad` alone), probe forwards
run in eval mode inside `torch.random.fork_rng()` so the training RNG stream — and with
it exact resume — is unchanged. Each monitor keeps its records (flat dicts with `step`
and `monitor`) in `history`, restores them through `state_dict`, and appends them to
`run_dir/signals.jsonl` on rank 0. The application turns that file into findings at the
end of the run (`doctor.run.diagnose_run`), so train, `doctor run` and the report agree.

A package so that each monitor stays small: the base (`base.py`: cadence, records,
state, `probe_mode`), one module per monitor (gradients, loss, interference, drift,
optimizer, updates, negatives) and `build_monitors` (`builder.py`). The names below are the extension
point: subclass `Monitor` and pass it to `train(..., callbacks=[...])`.
"""

from contrastkit.doctor.monitors.base import MAX_NAMES, SIGNALS_FILE, Monitor, probe_mode
from contrastkit.doctor.monitors.builder import build_monitors, first_pair
from contrastkit.doctor.monitors.drift import DriftMonitor
from contrastkit.doctor.monitors.gradients import GradientMonitor
from contrastkit.doctor.monitors.interference import InterferenceMonitor
from contrastkit.doctor.monitors.loss import LossMonitor
from contrastkit.doctor.monitors.negatives import (
    NegativesMonitor,
    negatives_per_query,
    negatives_stats,
)
from contrastkit.doctor.monitors.optimizer import (
    OptimizerMonitor,
    pretrained_share,
    temperature_params,
)
from contrastkit.doctor.monitors.updates import UpdateMonitor, update_ratios, weights_before

__all__ = [
    "MAX_NAMES",
    "SIGNALS_FILE",
    "DriftMonitor",
    "GradientMonitor",
    "InterferenceMonitor",
    "LossMonitor",
    "Monitor",
    "NegativesMonitor",
    "OptimizerMonitor",
    "UpdateMonitor",
    "build_monitors",
    "first_pair",
    "negatives_per_query",
    "negatives_stats",
    "pretrained_share",
    "probe_mode",
    "temperature_params",
    "update_ratios",
    "weights_before",
]
