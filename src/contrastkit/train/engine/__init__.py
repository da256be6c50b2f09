"""The training engine: what a run holds, and the loop that runs it.

In the order things happen: `parts.py` (`EngineParts`) is what the caller hands in (model,
loss, loader factory, phase weights, callbacks); `setup.py` (`EngineSetup`) builds from it
and `train:` the optimizer, schedule, AMP (`precision.py`), DDP wrapper, trackers and
counters; `loop.py` (`Engine.fit`) runs epochs and steps, firing the events of
`contrastkit/events.py`; `outputs.py` writes metrics files, loggers and progress;
`evaluation.py` decides when to evaluate, and with `best.py` (`BestTracker`) keeps the best
checkpoint and early stopping.
Checkpoints are `train/checkpoint/`, accumulation `train/accumulation/`.
"""

from contrastkit.train.engine.loop import Engine
from contrastkit.train.engine.parts import EngineParts
from contrastkit.train.engine.setup import EngineSetup

__all__ = ["Engine", "EngineParts", "EngineSetup"]
