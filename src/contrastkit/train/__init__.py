"""contrastkit.train: the training engine (application layer).

Public entry points: `train` (run.py), `load_run` (checkpoint.py), `Engine`/`EngineParts`
(engine.py) for custom components, `sweep` (sweep.py).
"""

from contrastkit.train.checkpoint import LoadedRun, load_run
from contrastkit.train.engine import Engine, EngineParts
from contrastkit.train.events import Callback, Event, State, fire
from contrastkit.train.run import train

__all__ = [
    "Callback",
    "Engine",
    "EngineParts",
    "Event",
    "LoadedRun",
    "State",
    "fire",
    "load_run",
    "train",
]
