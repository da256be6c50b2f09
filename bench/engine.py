"""Engine overheads: logging on vs off (speed) and cached accumulation vs full batch (memory).

Each measurement runs in a fresh subprocess so peak memory and warm caches do not leak
between them. Run: `python bench/engine.py` (about a minute on 2 CPU cores; `--quick`: one
repeat of a few tiny steps, a smoke run of every code path). The last line is `RESULT {"logging_overhead": t_on / t_off, "accum8_peak_mem_vs_full": mem_acc8 / mem_full}`.

The model is a token-level toy (an MLP over 64 tokens, mean-pooled) whose activations
dominate its memory, like a real encoder's; the demo model can replace it once
`examples/digits.yaml` is wired here. Memory is `torch.cuda.max_memory_allocated` on
CUDA, else the growth of peak RSS (`ru_maxrss`) during one forward/backward.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.losses.result import ContrastiveResult, LossOutput
from contrastkit.models.outputs import ModelOutput, TowerOutput

TOKENS, D_IN, WIDTH, DIM = 64, 32, 256, 64


class TokenTower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(D_IN, WIDTH),
            nn.GELU(),
            nn.Linear(WIDTH, WIDTH),
            nn.GELU(),
            nn.Linear(WIDTH, WIDTH),
            nn.GELU(),
        )
        self.projection = nn.Linear(WIDTH, DIM)

    def forward(self, x: torch.Tensor) -> TowerOutput:
        tokens = self.encoder(x)
        pooled = tokens.mean(1)
        return TowerOutput(
            tokens=tokens, pooled=pooled, embedding=F.normalize(self.projection(pooled), dim=-1)
        )


class BenchModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.towers = nn.ModuleDict({"a": TokenTower(), "b": TokenTower()})

    def forward(self, batch: dict) -> ModelOutput:
        return ModelOutput(towers={t: self.towers[t](batch[f"x_{t}"]) for t in ("a", "b")})


class BenchLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    def contrastive(self, emb: dict, batch: dict, teachers: dict | None = None):
        logits = self.logit_scale.exp() * emb["a"] @ emb["b"].T
        target = torch.arange(len(logits))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return {"contrastive": loss}, {
            "contrastive": ContrastiveResult(loss=loss, logit_scale=self.logit_scale.exp().detach())
        }

    def auxiliary(self, output: ModelOutput, batch: dict) -> dict:
        return {}

    def forward(self, output: ModelOutput, batch: dict, weights: dict) -> LossOutput:
        terms, results = self.contrastive(output.embeddings, batch)
        return LossOutput(total=terms["contrastive"], terms=terms, weights=weights, results=results)


def batch_of(n: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "x_a": torch.randn(n, TOKENS, D_IN, generator=g),
        "x_b": torch.randn(n, TOKENS, D_IN, generator=g),
        "group_ids": torch.arange(n),
    }


def measure_speed(logging_on: bool, steps: int = 40, batch: int = 32) -> float:
    """Seconds per optimizer step of the engine with all logging on or off."""
    from contrastkit.config import LoggersConfig, TrainConfig
    from contrastkit.train.engine import Engine
    from contrastkit.train.engine.parts import EngineParts

    torch.manual_seed(0)
    cfg = TrainConfig(
        epochs=1,
        log_every=1 if logging_on else 10**6,
        device="cpu",
        warmup_steps=1,
        progress="plain" if logging_on else "none",
        loggers=LoggersConfig(tensorboard=logging_on),
    )
    data = [batch_of(batch, seed=i) for i in range(steps)]
    parts = EngineParts(
        model=BenchModel(),
        criterion=BenchLoss(),
        make_loader=lambda e, s: data[s:],
        steps_per_epoch=steps,
        weights=lambda step, phase: {"contrastive": 1.0},
    )
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(cfg, parts, Path(tmp))
        start = time.perf_counter()
        engine.fit()
        return (time.perf_counter() - start) / steps


def measure_memory(accumulate: int, batch: int = 512) -> float:
    """Peak bytes added by one forward/backward of a `batch`-row step."""
    from contrastkit.train.accumulation import accumulation_step
    from contrastkit.train.accumulation.context import StepContext

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, loss = BenchModel().to(device), BenchLoss().to(device)
    data = {k: v.to(device) for k, v in batch_of(batch).items()}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    accumulation_step(
        model, loss, data, {"contrastive": 1.0}, StepContext(), accumulate=accumulate, mode="cached"
    )
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated() - base)
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)


def _child(kind: str, arg: str) -> float:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import engine; print(engine.{kind}({arg}))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke run)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved speed repeats")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per speed run")
    parser.add_argument("--batch", type=int, default=32, help="rows per speed step")
    parser.add_argument("--memory-batch", type=int, default=512, help="rows of the memory step")
    args = parser.parse_args()
    if args.quick:
        # The memory step keeps its 512 rows: a smaller step's RSS growth stays under the
        # peak the imports already reached, and reads as 0.
        args.repeats, args.steps, args.batch = 1, 4, 8
    offs, ons = [], []
    speed = f"steps={args.steps}, batch={args.batch}"
    for _ in range(args.repeats):  # interleaved: the machine's load drifts
        if args.quick:  # in-process: a smoke run of the code path, not a timing
            offs.append(measure_speed(False, steps=args.steps, batch=args.batch))
            ons.append(measure_speed(True, steps=args.steps, batch=args.batch))
            continue
        offs.append(_child("measure_speed", f"False, {speed}"))
        ons.append(_child("measure_speed", f"True, {speed}"))
    t_off, t_on = min(offs), min(ons)
    m_full = _child("measure_memory", f"1, batch={args.memory_batch}")
    m_acc = _child("measure_memory", f"8, batch={args.memory_batch}")
    print(f"step time: logging off {t_off * 1e3:.1f} ms, on {t_on * 1e3:.1f} ms")
    print(
        f"peak memory of one step (batch {args.memory_batch}): full {m_full / 2**20:.0f} MiB, "
        f"accumulate 8 {m_acc / 2**20:.0f} MiB"
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "logging_overhead": round(t_on / t_off, 3),
                "accum8_peak_mem_vs_full": round(m_acc / m_full, 3),
                "quick": args.quick,
            }
        )
    )


if __name__ == "__main__":
    main()
