"""DataLoader worker settings shared by the manifest and the shard loaders: how many
decoding workers (`data.num_workers`, `auto`), pinned memory, and what a worker does
with the scheduler's signals."""

from __future__ import annotations

import os
import signal
from typing import Any

import torch

from contrastkit.config import DataConfig

# Past ~8 decoding workers per process the GPU, not the loader, is the limit for the
# towers contrastkit trains, while each worker costs a process and its prefetched batches.
MAX_AUTO_WORKERS = 8


def resolve_workers(num_workers: int | str) -> int:
    """`data.num_workers`; `auto` = the cores this process may use minus one (the main
    process runs the model), capped at `MAX_AUTO_WORKERS`."""
    if num_workers != "auto":
        return int(num_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min((cores or 1) - 1, MAX_AUTO_WORKERS))


def leave_signals_to_the_trainer(worker_id: int) -> None:
    """A loader worker ignores SIGTERM / SIGUSR1 (its `worker_init_fn`).

    Schedulers signal every process of a job; a worker that died on that SIGTERM would fail
    the trainer's next fetch before it could finish its step and checkpoint (the trainer
    handles the signal: train/preemption.py). The trainer still ends its workers when it
    exits: they stop on its shutdown message, or on their own once it is gone.
    """
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def worker_options(cfg: DataConfig) -> dict[str, Any]:
    """DataLoader keywords shared by manifest and shard loaders: workers decode and
    collate; pinned host memory lets `to_device(non_blocking=True)` overlap the copy."""
    workers = resolve_workers(cfg.num_workers)
    pin = torch.cuda.is_available() if cfg.pin_memory == "auto" else bool(cfg.pin_memory)
    options: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if workers > 0:
        options["persistent_workers"] = cfg.persistent_workers
        options["worker_init_fn"] = leave_signals_to_the_trainer
    return options
