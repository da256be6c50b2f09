"""contrastkit.train: the training engine.

Public entry points: `load_run` (checkpoint/), `Engine` and `EngineParts` (engine/) for
custom components. The application (`train(cfg, run_dir)`, sweeps, CLI) lives in
`contrastkit.app`, which imports this package, never the other way round.
"""

from contrastkit.events import Callback, Event, State, fire
from contrastkit.train.checkpoint import LoadedRun, load_run
from contrastkit.train.engine import Engine
from contrastkit.train.engine.parts import EngineParts

__all__ = [
    "Callback",
    "Engine",
    "EngineParts",
    "Event",
    "LoadedRun",
    "State",
    "fire",
    "load_run",
]
