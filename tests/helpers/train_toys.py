"""Toy model, criterion and loader for the engine tests (no dependency on the real packages).

Imported as `helpers.train_toys` by the tests and by the subprocess scripts (run with
`PYTHONPATH=tests`; `python tests/helpers/train_toys.py RUN_DIR [resume] [slow]`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.losses.result import ContrastiveResult, LossOutput, TermSum
from contrastkit.models.outputs import ModelOutput, TowerOutput


class ToyTower(nn.Module):
    def __init__(self, d_in: int, width: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.encoder = nn.Linear(d_in, width)
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.projection = nn.Linear(width, dim)

    def forward(self, x: Tensor) -> TowerOutput:
        h = self.drop(torch.tanh(self.norm(self.encoder(x))))
        e = F.normalize(self.projection(h), dim=-1)
        return TowerOutput(tokens=h.unsqueeze(1), pooled=h, embedding=e)


class ToyModel(nn.Module):
    """Two towers (`a` reads `x_a`, `b` reads `x_b`) and a classifier on tower a."""

    def __init__(
        self, d_in: int = 6, width: int = 8, dim: int = 4, classes: int = 3, dropout: float = 0.0
    ):
        super().__init__()
        self.towers = nn.ModuleDict(
            {"a": ToyTower(d_in, width, dim, dropout), "b": ToyTower(d_in, width, dim, dropout)}
        )
        self.classifier = nn.Linear(width, classes)

    def forward(self, batch: dict) -> ModelOutput:
        towers = {"a": self.towers["a"](batch["x_a"]), "b": self.towers["b"](batch["x_b"])}
        logits = self.classifier(towers["a"].pooled)
        return ModelOutput(towers=towers, heads={"classification": {"logits": logits}})


def gather(t: Tensor) -> Tensor:
    """All-gather with gradient when a process group is up (global negatives)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(t))


def multi_positive_infonce(a: Tensor, b: Tensor, groups: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE where every pair with equal group id is a positive."""
    logits = scale * a @ b.T
    pos = groups[:, None] == groups[None, :]
    a2b = -(
        torch.logsumexp(logits.masked_fill(~pos, -torch.inf), 1) - torch.logsumexp(logits, 1)
    ).mean()
    lt = logits.T
    b2a = -(torch.logsumexp(lt.masked_fill(~pos.T, -torch.inf), 1) - torch.logsumexp(lt, 1)).mean()
    return (a2b + b2a) / 2


class ToyCriterion(nn.Module):
    """`contrastive` (InfoNCE on towers a/b) + `auxiliary` (classification) like MultitaskLoss."""

    def __init__(self, init_scale: float = 5.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(init_scale)).log())

    auxiliary_names = ("classification",)

    def contrastive(self, embeddings: dict[str, Tensor], batch: dict, teachers=None):
        a, b = gather(embeddings["a"]), gather(embeddings["b"])
        groups = gather(batch["group_ids"])
        scale = self.logit_scale.exp()
        loss = multi_positive_infonce(a, b, groups, scale.to(a.dtype))
        result = ContrastiveResult(loss=loss, logit_scale=scale.detach(), num_positives=0)
        return {"contrastive": loss}, {"contrastive": result}

    def auxiliary(self, output: ModelOutput, batch: dict) -> dict[str, TermSum]:
        if "classification" not in output.heads or "label" not in batch:
            return {}
        labels = batch["label"]
        logits = output.heads["classification"]["logits"]
        total = F.cross_entropy(logits, labels, ignore_index=-1, reduction="sum")
        return {"classification": TermSum(total, (labels >= 0).sum().to(total.dtype))}

    def forward(self, output: ModelOutput, batch: dict, weights: dict[str, float]) -> LossOutput:
        terms, results = self.contrastive(output.embeddings, batch)
        terms.update({k: v.mean() for k, v in self.auxiliary(output, batch).items()})
        total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
        stats = {"contrastive/logit_scale": float(results["contrastive"].logit_scale)}
        return LossOutput(
            total=total, terms=terms, weights=dict(weights), stats=stats, results=results
        )


def toy_data(
    n: int = 48, d_in: int = 6, seed: int = 0, dtype: torch.dtype = torch.float32
) -> dict[str, Tensor]:
    """Pairs (x_a, x_b) sharing a latent per group; 2 rows per group; label = group % 3."""
    g = torch.Generator().manual_seed(seed)
    groups = torch.arange(n) // 2
    latent = torch.randn(n // 2 + 1, d_in, generator=g, dtype=dtype)[groups]
    x_a = latent + 0.3 * torch.randn(n, d_in, generator=g, dtype=dtype)
    x_b = latent + 0.3 * torch.randn(n, d_in, generator=g, dtype=dtype)
    return {"x_a": x_a, "x_b": x_b, "group_ids": groups, "label": groups % 3}


def toy_loader(
    data: dict[str, Tensor],
    batch_size: int,
    *,
    seed: int,
    epoch: int = 0,
    start_batch: int = 0,
    rank: int = 0,
    world_size: int = 1,
):
    """Shuffled, drop-last batches, deterministic in (seed, epoch); rank r gets slice r."""
    n = len(data["group_ids"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    per_rank = batch_size // world_size
    for b in range(start_batch, n // batch_size):
        idx = order[b * batch_size : (b + 1) * batch_size][rank * per_rank : (rank + 1) * per_rank]
        yield {k: v[idx] for k, v in data.items()}


def toy_train_config(**overrides):
    """A small TrainConfig for the toy setup (no trackers, no progress output)."""
    from contrastkit.config import LoggersConfig, TrainConfig

    base = dict(
        epochs=3,
        lr=0.05,
        warmup_steps=2,
        log_every=1,
        seed=0,
        progress="none",
        loggers=LoggersConfig(tensorboard=False),
        device="cpu",
    )
    base.update(overrides)
    return TrainConfig(**base)


def toy_evaluate(data: dict[str, Tensor]):
    """Validation metric: top-1 retrieval a->b on `data` (group ids unique per pair)."""

    def evaluate(model: nn.Module) -> dict[str, float]:
        out = model(data)
        sim = out.embeddings["a"] @ out.embeddings["b"].T
        hit = data["group_ids"][sim.argmax(1)] == data["group_ids"]
        return {
            "val/a_to_b/R@1": float(hit.double().mean()),
            "val/loss_proxy": float(-sim.diag().mean().detach()),
        }

    return evaluate


def toy_engine(
    run_dir,
    cfg=None,
    *,
    dropout: float = 0.1,
    callbacks=(),
    n: int = 48,
    batch: int = 8,
    dist=None,
    **kw,
):
    """Engine over the toy model/criterion/loader; `batch` is global rows per optimizer step."""
    from contrastkit.train.engine import Engine
    from contrastkit.train.engine.parts import EngineParts

    cfg = cfg or toy_train_config()
    torch.manual_seed(cfg.seed)
    data = toy_data(n)
    val = toy_data(16, seed=99)
    parts = EngineParts(
        model=ToyModel(dropout=dropout),
        criterion=ToyCriterion(),
        make_loader=lambda epoch, start: toy_loader(
            data,
            batch,
            seed=cfg.seed,
            epoch=epoch,
            start_batch=start,
            rank=dist.rank if dist else 0,
            world_size=dist.world_size if dist else 1,
        ),
        steps_per_epoch=n // batch,
        weights=lambda step, phase: {"contrastive": 1.0, "classification": 0.2},
        evaluate=toy_evaluate(val),
        select_metric="val/a_to_b/R@1",
        callbacks=list(callbacks),
        **kw,
    )
    return Engine(cfg, parts, run_dir, dist=dist)


def dist_worker(rank: int, world: int, port: int, out: str) -> None:
    """One rank of the 2-process test: train 1 epoch on the toy setup, rank 0 saves params."""
    import os

    import torch.distributed as tdist

    from contrastkit.train.distributed import DistInfo

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = toy_train_config(epochs=1, accumulate=2)
        engine = toy_engine(
            f"{out}/run", cfg, dropout=0.0, n=32, batch=8, dist=DistInfo(rank, world)
        )
        engine.fit()
        if rank == 0:
            torch.save(engine.model.state_dict(), f"{out}/params.pt")
            torch.save(engine.criterion.state_dict(), f"{out}/criterion.pt")
    finally:
        tdist.destroy_process_group()


def script_run(run_dir, *, resume: bool = False, slow: bool = False) -> dict:
    """The run the kill-and-resume test performs (in a subprocess or in-process)."""
    import json
    import time
    from pathlib import Path

    from contrastkit.events import Callback

    class Slow(Callback):
        def on_batch_end(self, state) -> None:
            time.sleep(0.15)

    run_dir = Path(run_dir)
    cfg = toy_train_config(accumulate=2, checkpoint={"every_steps": 2, "keep_last": 3})
    engine = toy_engine(run_dir, cfg, callbacks=[Slow()] if slow else [Callback()])
    summary = engine.fit(resume="auto" if resume else None)
    result = {
        "summary": summary,
        "params": {k: v.tolist() for k, v in engine.model.state_dict().items()},
    }
    (run_dir / "final.json").write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    # Subprocess entry for the kill-and-resume test: train_toys.py RUN_DIR [resume] [slow]
    import sys

    script_run(sys.argv[1], resume="resume" in sys.argv, slow="slow" in sys.argv)
