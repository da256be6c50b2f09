"""Checkpoints: the whole training state written to disk and read back, for exact resume
and for loading a trained run.

In the order things happen: `schedule.py` decides when a checkpoint is due (each epoch
before evaluation, `every_steps`, `every_minutes`) and which one a resume loads;
`snapshot.py` turns the live training state (model, loss, optimizer, scheduler, scaler,
EMA, callbacks, RNG, counters) into tensors + JSON and back (`capture`, `restore`,
`check_resume`), using `state_tensors.py` for state_dicts; `files.py` writes one
checkpoint folder atomically and reads it back only when complete (`save_checkpoint`,
`load_checkpoint`); `folder.py` manages `checkpoints/` (latest, `best.json`, pruning,
`resolve_checkpoint`); `load.py` rebuilds a trained run for eval / embed / search / export
(`load_run`, `LoadedRun`, `picked_label`).
"""

from contrastkit.train.checkpoint.load import LoadedRun, load_run, picked_label

__all__ = ["LoadedRun", "load_run", "picked_label"]
