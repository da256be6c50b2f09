"""Multi-process training under `torchrun`: process group, device, DDP, rank-0 helpers.

`torchrun --nproc_per_node N -m contrastkit train ...` sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT; `init_distributed` reads them (gloo on CPU, nccl on CUDA).
Each rank loads a disjoint slice of every global batch, so the global batch is
micro-batch x accumulate x world size; the contrastive losses all-gather embeddings so
negatives are global. Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from contrastkit.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes files and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` → `cuda:<local_rank>` when CUDA is present, else CPU."""
    if preference == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"train.device: {preference!r} but no CUDA device is available; use cpu or auto"
            )
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(preference: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment (no-op when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(preference, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def wrap_ddp(model: nn.Module, info: DistInfo, *, find_unused: bool = True) -> nn.Module:
    """DDP-wrap for world size > 1. `find_unused` because heads may sit out a phase."""
    if not info.enabled:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=find_unused
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's `no_sync` (skip the gradient all-reduce) or a null context."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


def barrier() -> None:
    """Wait for every rank; a no-op without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """All-reduce-mean the gradients of parameters outside DDP (the loss's temperature)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(dist.get_world_size())


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's value of `flag` on every rank (e.g. early stopping)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def cleanup() -> None:
    """Destroy the process group, if one was initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
