"""The optimizer: its parameter groups, its learning-rate schedule and one step of it.

In the order things happen: `groups.py` builds AdamW with parameter groups (no decay on
biases, norms and the loss's temperature / bias; per-module lr multipliers: `lr_scale`,
layer decay, new parameters) and is what `train.freeze` / phases match module names with;
`schedule.py` gives each step's lr (warm-up, then cosine / linear / constant decay);
`step.py` (`OptimizerStep`) takes one step after the backward pass: unscale, clip, skip a
non-finite step, update, clamp the loss's bounded parameters, advance the schedule, move
the EMA teacher.
"""

from contrastkit.train.optim.groups import build_optimizer, layer_decay_scales, with_new_params
from contrastkit.train.optim.schedule import LrScheduler, lr_at, warmup_steps_for
from contrastkit.train.optim.step import OptimizerStep

__all__ = [
    "LrScheduler",
    "OptimizerStep",
    "build_optimizer",
    "layer_decay_scales",
    "lr_at",
    "warmup_steps_for",
    "with_new_params",
]
