"""When the engine evaluates, and what an evaluation decides: best.json and early stopping.

The evaluation itself (`EngineParts.evaluate`) comes from the caller; the engine runs it
after the epoch's checkpoint, then these point best.json at that checkpoint if the
selection metric improved, and make every rank agree on stopping.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.distributed import DistInfo, broadcast_flag
from contrastkit.train.engine.best import BestTracker

log = logging.getLogger(__name__)


def eval_due(epoch: int, epochs: int, every: int, *, done: bool, has_evaluate: bool) -> bool:
    """Evaluate after `epoch` finished epochs: every `every` epochs, and after the last."""
    last = epoch >= epochs or done
    return has_evaluate and (epoch % every == 0 or last)


def point_best(
    tracker: BestTracker,
    metrics: dict[str, float],
    checkpoint: Path | None,
    root: Path,
    step: int,
    *,
    is_main: bool,
) -> None:
    """Observe `metrics`; point best.json at `checkpoint` (rank 0's path) if it improved."""
    improved = tracker.observe(metrics)
    metric, best = tracker.metric, tracker.best  # both set when improved
    if improved and checkpoint is not None and is_main and metric and best is not None:
        ckpt_dir.set_best(root, checkpoint, metric, best, step)


def agree_stop(tracker: BestTracker, dist: DistInfo, device: torch.device, epoch: int) -> None:
    """Make the early-stopping decision rank 0's on every rank, and say when it stops."""
    stop = tracker.stop
    # Rank 0 decides: evaluation on each rank may differ in the last float bit.
    tracker.stop = broadcast_flag(stop, device) if dist.enabled else stop
    if tracker.stop:
        log.info(
            "early stopping at epoch %d: %s did not improve for %d evaluations",
            epoch,
            tracker.metric,
            tracker.bad_evals,
        )
