"""Global negatives and global counts: 2 gloo processes reproduce the single-process loss
and gradients (contrastive objectives, and per-unit terms divided by the count of all
ranks)."""

from __future__ import annotations

import multiprocessing
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from contrastkit.config import LossConfig
from contrastkit.losses.clip import ClipLoss
from contrastkit.losses.distributed import gather_no_grad, gather_with_grad
from contrastkit.losses.multitask import MultitaskLoss
from contrastkit.losses.siglip import SiglipLoss
from contrastkit.losses.triplet import TripletLoss
from contrastkit.models.outputs import ModelOutput

# Uneven split on purpose: rank 0 holds 5 rows, rank 1 holds 3 (exercises the padding).
SPLITS = [(0, 5), (5, 8)]
GROUPS = torch.tensor([0, 0, 1, 2, 3, 3, 1, 4])
LABELS = torch.tensor([0, 0, 1, 1, 0, 0, 1, -1])
# Per-unit terms with different counts per rank: rank 0 has 1 labelled row and 5 caption
# tokens, rank 1 has 2 and 6, so averaging the two ranks' means would be wrong.
AUX_LABELS = torch.tensor([-1, -1, -1, -1, 2, 0, 1, -1])
CAPTION_TARGETS = torch.tensor([[1, -100]] * 5 + [[0, 2]] * 3)


def _setup() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, nn.Module, dict[str, nn.Module]]:
    torch.manual_seed(0)
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.randn(8, 6, dtype=torch.float64)
    attrs = torch.randn(8, 2, dtype=torch.float64)
    proj = nn.Linear(6, 4).double()
    losses = {
        "clip": ClipLoss(init_temperature=0.2).double(),
        "siglip": SiglipLoss(init_logit_bias=-2.0, block_size=3).double(),
        "triplet": TripletLoss(miner="all", margin_scale=0.3),
    }
    return x, y, attrs, proj, losses


def _step(rows: slice) -> dict[str, torch.Tensor]:
    """Loss on `rows` (gathered under a process group) and the DDP-averaged gradients."""
    x, y, attrs, proj, losses = _setup()
    out: dict[str, torch.Tensor] = {}
    for name, loss in losses.items():
        proj.zero_grad()
        loss.zero_grad()
        a = F.normalize(proj(x[rows]), dim=1)
        b = F.normalize(proj(y[rows]), dim=1)
        r = loss(a, b, GROUPS[rows], attributes=attrs[rows], labels=LABELS[rows])
        r.loss.backward()
        params = {"proj": proj.weight, **dict(loss.named_parameters())}
        for pname, p in params.items():
            grad = p.grad.clone()
            if dist.is_initialized():  # what DistributedDataParallel does: average over ranks
                dist.all_reduce(grad)
                grad /= dist.get_world_size()
            out[f"{name}/{pname}"] = grad
        out[f"{name}/loss"] = r.loss.detach()
    out.update(_per_unit_terms(x, rows))
    return out


def _per_unit_terms(x: torch.Tensor, rows: slice) -> dict[str, torch.Tensor]:
    """Classification + captioning through MultitaskLoss, DDP-averaged gradients."""
    torch.manual_seed(1)
    head, caption = nn.Linear(6, 3).double(), nn.Linear(6, 2 * 3).double()
    loss = MultitaskLoss(
        LossConfig.model_validate(
            {"classification": {"weight": 1.0}, "captioning": {"weight": 0.5}}
        )
    ).double()
    output = ModelOutput(
        towers={},
        heads={
            "classification": {"logits": head(x[rows])},
            "captioning": {
                "logits": caption(x[rows]).view(-1, 2, 3),
                "targets": CAPTION_TARGETS[rows],
            },
        },
    )
    result = loss(output, {"label": AUX_LABELS[rows]})
    result.total.backward()
    out = {f"aux/{k}": v.detach() for k, v in result.terms.items()}
    out["aux/total"] = result.total.detach()
    for pname, p in [("head", head.weight), ("caption", caption.weight)]:
        grad = p.grad.clone()
        if dist.is_initialized():
            dist.all_reduce(grad)
            grad /= dist.get_world_size()
        out[f"aux/{pname}"] = grad
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        result = _step(slice(*SPLITS[rank]))
        local = torch.arange(*SPLITS[rank], dtype=torch.float64)[:, None].requires_grad_()
        gathered = gather_with_grad(local)
        (gathered.sum() * 1.0).backward()  # every rank's loss counts once per rank: W
        result["gather/values"] = gathered.detach()
        result["gather/grad"] = local.grad
        result["gather/ids"] = gather_no_grad(GROUPS[slice(*SPLITS[rank])] > 1)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.dist
def test_two_gloo_ranks_match_single_process(tmp_path: Path) -> None:
    # forkserver with torch preloaded: torch is imported once (spawn imports it per child),
    # and children are not forked from this possibly multi-threaded pytest process.
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["torch", "contrastkit.losses"]
    )
    mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="forkserver"
    )
    single = _step(slice(0, 8))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        for key, value in single.items():
            torch.testing.assert_close(
                got[key], value, atol=1e-5, rtol=1e-5, msg=f"rank {rank} {key}"
            )
        torch.testing.assert_close(got["gather/values"][:, 0], torch.arange(8, dtype=torch.float64))
        # Backward all-reduces: each rank's slice gets one unit per rank (W = 2).
        torch.testing.assert_close(
            got["gather/grad"],
            torch.full((SPLITS[rank][1] - SPLITS[rank][0], 1), 2.0, dtype=torch.float64),
        )
        assert torch.equal(got["gather/ids"], GROUPS > 1)
