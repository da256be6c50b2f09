"""The watcher under two gloo processes (torchrun's setting): rank 0 writes, every rank
measures the all-reduced gradient."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from bench.watcher import TwoTower, clip_loss, digits_views


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watched_worker(rank: int, world: int, port: int, out: str) -> None:
    from contrastkit.doctor import attach

    tdist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(TwoTower())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    watcher = attach(
        model, opt, run_dir=Path(out) / "run", batch_size=8, towers=("image", "view"), every=2
    )
    x, noisy, _ = digits_views()
    for step in range(6):
        rows = slice((2 * step + rank) * 8, (2 * step + rank + 1) * 8)  # each rank its own rows
        a, b = model(x[rows], noisy[rows])
        loss = clip_loss(a, b, model.module.logit_scale.exp())
        watcher.observe(loss, embeddings=(a, b))
        opt.zero_grad()
        loss.backward()
        opt.step()
    watcher.close(report=False)
    grads = [r for r in watcher.signals() if r["monitor"] == "gradients"]
    Path(out, f"rank{rank}.json").write_text(json.dumps(grads))
    tdist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.dist
def test_rank_0_writes_and_ranks_agree_on_gradients(tmp_path):
    mp.spawn(watched_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    lines = [json.loads(x) for x in (tmp_path / "run" / "signals.jsonl").read_text().splitlines()]
    keys = [(r["monitor"], r["step"], r.get("event")) for r in lines]
    assert len(keys) == len(set(keys))  # one writer: no record twice
    assert sorted({s for m, s, _ in keys if m == "gradients"}) == [0, 2, 4]
    assert "grad_norm/image" in lines[[m for m, *_ in keys].index("gradients")]  # DDP unwrapped
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    for a, b in zip(rank0, rank1, strict=True):  # DDP averaged the gradients before the step
        assert a["grad_norm/image"] == pytest.approx(b["grad_norm/image"], rel=1e-6)
    assert (tmp_path / "run" / "findings.json").is_file()
