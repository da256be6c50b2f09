"""The engine's checkpoint policy: when to save, which checkpoint a resume loads, and
whether a resumed data stream stands where the checkpoint's stood.

What a checkpoint holds is `snapshot.py`; how it is written is `files.py` and how it
is found is `folder.py`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from contrastkit.config import CheckpointConfig
from contrastkit.errors import RunDirError
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.distributed import DistInfo
from contrastkit.train.preemption import agree

log = logging.getLogger(__name__)


def checkpoint_due(
    cfg: CheckpointConfig,
    step: int,
    last_save: float,
    dist: DistInfo,
    device: torch.device,
    signum: int | None = None,
) -> tuple[bool, int | None]:
    """At the end of a step: is a checkpoint due, and did a preemption signal arrive?

    Returns (save, signal): `save` when `checkpoint.every_steps` is reached or
    `every_minutes` passed since `last_save`; `signal` is the preemption signal any rank
    received (`signum` is this rank's), None without one.
    """
    every = cfg.every_steps
    due = bool(every and step % every == 0)
    minutes = cfg.every_minutes
    late = bool(minutes and time.monotonic() - last_save >= minutes * 60.0)
    if not dist.enabled:
        return due or late, signum
    # Clocks differ per rank, so rank 0's clock decides; a signal may reach one rank only.
    # One collective agrees on both, so every rank saves and stops after the same step.
    late, signum = agree(late, signum, device)
    return due or late, signum


def resume_path(run_dir: Path, root: Path, which: str) -> Path | None:
    """`auto` (newest valid; None when there is no checkpoint at all), `last`, or a path.

    Raises:
        RunDirError: no usable checkpoint.
    """
    if which == "auto":
        path = ckpt_dir.auto_resume_checkpoint(root)
        if path is None:
            log.info("resume auto: no checkpoint in %s, starting fresh", root)
        return path
    return ckpt_dir.resolve_checkpoint(run_dir, which)


def check_position(saved: dict | None, now: dict | None) -> None:
    """A resumed stream must stand where the checkpoint's stream stood; it does not when
    the shards, the number of processes or of loader workers changed.

    Raises:
        RunDirError: the positions differ.
    """
    if saved is not None and now is not None and saved != now:
        raise RunDirError(
            f"the data stream differs from the checkpoint's (shards, processes or "
            f"data.num_workers changed): checkpoint at {saved}, this run at {now}"
        )
