"""Hugging Face `Trainer`'s `trainer_state.json` (also sentence-transformers' trainer).

`log_history` holds one object per `on_log`: training entries (`loss`, `grad_norm`,
`learning_rate`, `epoch`, `step`), evaluation entries (`eval_*`) and a final summary
(`train_runtime`, `train_loss`). `train_batch_size` is the per-device batch size, i.e.
the in-batch negatives of a loss that does not gather across devices (MNRL, HF CLIP).
"""

from __future__ import annotations

import json
from pathlib import Path

from contrastkit.doctor.logs.source import HF_TRAINER, LogSource, as_number, as_step
from contrastkit.errors import DataError

FILE_NAME = "trainer_state.json"
# Keys of a log entry that are coordinates, not scalars to diagnose.
_COORDINATES = ("step", "epoch")


def read_trainer_state(path: Path) -> LogSource:
    """The scalars of `log_history`, keyed as the Trainer logged them.

    Raises:
        DataError: not JSON, no `log_history` list, or an entry without an integer `step`.
    """
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from err
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        raise DataError(
            f"{path}: no `log_history` list; a Hugging Face trainer_state.json has one "
            "(written at every checkpoint)"
        )
    source = LogSource(path, "trainer_state", HF_TRAINER)
    batch = as_step(state.get("train_batch_size"))
    if batch and batch > 0:
        source.batch_size = batch
        source.batch_note = f"batch size {batch}: train_batch_size of {path}"
    for i, entry in enumerate(history):
        step = as_step(entry.get("step")) if isinstance(entry, dict) else None
        if step is None:
            raise DataError(f"{path}: log_history[{i}] has no integer `step`: {entry!r:.200}")
        for key, value in entry.items():
            number = as_number(value)
            if key not in _COORDINATES and number is not None:
                source.add(key, step, number)
    return source.finish()
