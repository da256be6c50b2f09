"""Non-finite steps: a NaN / Inf loss or gradient skips the optimizer step instead of
poisoning the weights, and too many in a row stop the run.

A skipped step leaves the optimizer, its scheduler position and the GradScaler exactly as
they were; only the batch is consumed. Under torchrun the decision is all-reduced, so every
rank skips the same step (a rank that stepped alone would desynchronise the replicas).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from contrastkit.errors import ContrastkitError

log = logging.getLogger(__name__)

# Row ids named in a log line or error message; a batch can hold thousands.
MAX_IDS_SHOWN = 20


class NonFiniteError(ContrastkitError):
    """Training stopped after `train.max_bad_steps` consecutive non-finite steps."""


def grads_finite(params: Iterable[Tensor]) -> bool:
    """True when every gradient is finite (one fused reduction, one host sync)."""
    flags = [torch.isfinite(p.grad).all() for p in params if p.grad is not None]
    return bool(torch.stack(flags).all()) if flags else True


def agree_bad(bad: bool, device: torch.device) -> bool:
    """True on every rank when any rank saw a non-finite step (no-op without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bad
    flag = torch.tensor([1.0 if bad else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item() > 0)


def gather_ids(ids: list[str]) -> list[str]:
    """Every rank's row ids (called only on a bad step, which all ranks agree on)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(ids)
    out: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(out, list(ids))
    return [i for part in out for i in (part or [])]


def batch_ids(batch: dict) -> list[str]:
    """The batch's manifest row ids (`ids`), as strings; empty when the batch has none."""
    return [str(i) for i in batch.get("ids", [])]


def _shown(ids: list[str]) -> str:
    if not ids:
        return "row ids unavailable"
    more = f" ... (+{len(ids) - MAX_IDS_SHOWN} more)" if len(ids) > MAX_IDS_SHOWN else ""
    return "rows " + ", ".join(ids[:MAX_IDS_SHOWN]) + more


class BadStepGuard:
    """Counts non-finite steps and raises after `max_consecutive` in a row.

    Args:
        max_consecutive: `train.max_bad_steps`; the run stops at this many bad steps in a row.
    """

    def __init__(self, max_consecutive: int) -> None:
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total = 0
        self.last_ids: list[str] = []

    def good(self) -> None:
        """A finite step ends the streak."""
        self.consecutive = 0

    def bad(self, *, step: int, loss: float, ids: list[str]) -> dict[str, object]:
        """Count a skipped step and warn; return the metrics to log for it.

        Raises:
            NonFiniteError: this is the `max_consecutive`-th bad step in a row.
        """
        self.consecutive += 1
        self.total += 1
        self.last_ids = ids
        what = "loss" if not math.isfinite(loss) else "gradient"
        log.warning(
            "non-finite %s after step %d (%s): skipped the optimizer step "
            "(%d in a row, the run stops at train.max_bad_steps=%d)",
            what,
            step,
            _shown(ids),
            self.consecutive,
            self.max_consecutive,
        )
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteError(
                f"{self.consecutive} consecutive training steps had a non-finite {what} "
                f"(after step {step}; last batch: {_shown(ids)}); stopped at "
                f"train.max_bad_steps={self.max_consecutive}. The last good checkpoint is "
                "intact. Lower train.lr, check those rows' media for NaN/Inf values, or set "
                "train.grad_clip."
            )
        return {
            "train/loss": loss,
            "train/bad_step": 1.0,
            "train/bad_steps_total": float(self.total),
            "train/bad_step_ids": ids[:MAX_IDS_SHOWN],
        }

    def state_dict(self) -> dict[str, int]:
        """The skipped-step counters, for a checkpoint."""
        return {"consecutive": self.consecutive, "total": self.total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the skipped-step counters."""
        self.consecutive = int(state.get("consecutive", 0))
        self.total = int(state.get("total", 0))
