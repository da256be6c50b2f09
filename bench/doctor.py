"""Doctor overhead: step time of the demo model with default-cadence monitors vs without.

Runs the engine's event sequence by hand (forward, loss, backward, AdamW step) on the
demo config (examples/digits.yaml: real digits, CNN + text transformer, CLIP loss), so
it measures the monitors alone, not the engine's logging or evaluation. Timed blocks of one
cadence period alternate between "with" and "without" (ABBA order) and the median of the
per-pair ratios is reported, so load from other processes hits both arms equally.
Falls back to a toy two-tower model if the demo cannot be built.

    python bench/doctor.py [--config examples/digits.yaml] [--steps 200] [--every 25]
    python bench/doctor.py --quick   # toy model, batch 32, 10 steps per arm, every 5

Last line: RESULT {"doctor_overhead": with / without, ...}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.config import Config, config_from_dict, load_config
from contrastkit.doctor.monitors import build_monitors
from contrastkit.events import Callback, Event, State, fire
from contrastkit.losses.result import ContrastiveResult, LossOutput
from contrastkit.models.outputs import ModelOutput, TowerOutput

ROOT = Path(__file__).resolve().parents[1]


def demo_parts(cfg: Config) -> tuple[nn.Module, nn.Module, list[dict]]:
    """Model, criterion and 32 training batches of the demo config."""
    from contrastkit.data import build_datasets, build_loader
    from contrastkit.losses import build_loss
    from contrastkit.models import build_model, build_tokenizer

    bundle = build_datasets(cfg.data)
    train = bundle.splits[cfg.data.train_split]
    tokenizer = build_tokenizer(cfg.model.tokenizer, train.texts())
    model = build_model(cfg.model, tokenizer=tokenizer, input_specs=train.input_specs())
    batches = list(islice(iter(build_loader(train, cfg.data, train=True, seed=0)), 32))
    return model, build_loss(cfg.loss), batches


class ToyModel(nn.Module):
    tower_names = ["image", "text"]

    def __init__(self, d: int = 256, dim: int = 64) -> None:
        super().__init__()
        self.towers = nn.ModuleDict(
            {
                t: nn.ModuleDict(
                    {
                        "encoders": nn.ModuleDict(
                            {t: nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))}
                        ),
                        "projection": nn.Linear(d, dim),
                    }
                )
                for t in self.tower_names
            }
        )

    def encode(self, tower: str, batch: dict) -> TowerOutput:
        pooled = self.towers[tower]["encoders"][tower](batch[tower])
        emb = F.normalize(self.towers[tower]["projection"](pooled), dim=-1)
        return TowerOutput(tokens=pooled[:, None], pooled=pooled, embedding=emb)

    def forward(self, batch: dict) -> ModelOutput:
        return ModelOutput(towers={t: self.encode(t, batch) for t in self.tower_names})


class ToyLoss(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(1 / 0.07).log())

    def forward(self, output: ModelOutput, batch: dict, weights: dict | None = None) -> LossOutput:
        a, b = output.towers["image"].embedding, output.towers["text"].embedding
        logits = self.logit_scale.exp() * a @ b.T
        t = torch.arange(len(a))
        loss = (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2
        r = ContrastiveResult(loss=loss, logit_scale=self.logit_scale.exp().detach())
        return LossOutput(
            total=loss,
            terms={"contrastive": loss},
            weights={"contrastive": 1.0},
            results={"contrastive": r},
        )


def toy_parts(batch: int = 128) -> tuple[Config, nn.Module, nn.Module, list[dict]]:
    cfg = config_from_dict(
        {
            "data": {"manifest": "toy.jsonl", "batch_size": batch},
            "model": {
                "towers": {
                    "image": {"streams": {"image": {"type": "mlp"}}},
                    "text": {"streams": {"text": {"type": "mlp"}}},
                }
            },
        }
    )
    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.randn(batch, 256, generator=g),
            "text": torch.randn(batch, 256, generator=g),
            "group_ids": torch.arange(batch),
        }
        for _ in range(32)
    ]
    return cfg, ToyModel(), ToyLoss(), batches


def time_steps(callbacks: list[Callback], state: State, batches: Any, steps: int) -> float:
    """Seconds for `steps` training steps, firing the engine's events."""
    start = time.perf_counter()
    for _ in range(steps):
        state.batch = next(batches)
        fire(callbacks, Event.BATCH_START, state)
        state.output = state.model(state.batch)
        fire(callbacks, Event.AFTER_FORWARD, state)
        state.loss = state.criterion(state.output, state.batch)
        fire(callbacks, Event.AFTER_LOSS, state)
        state.loss.total.backward()
        fire(callbacks, Event.AFTER_BACKWARD, state)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        fire(callbacks, Event.BATCH_END, state)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "examples" / "digits.yaml"))
    ap.add_argument("--steps", type=int, default=200, help="steps per arm")
    ap.add_argument("--every", type=int, default=None, help="doctor.every (default: the config's)")
    ap.add_argument("--toy", action="store_true", help="use the toy model")
    ap.add_argument("--quick", action="store_true", help="toy model, batch 32, 10 steps, every 5")
    args = ap.parse_args()
    if args.quick:
        args.toy, args.steps, args.every = True, 10, 5
    torch.manual_seed(0)
    try:
        if args.toy:
            raise RuntimeError("toy requested")
        cfg = load_config(args.config)
        model, criterion, batches = demo_parts(cfg)
        source = args.config
    except Exception as err:  # the demo is optional: fall back to the toy
        print(f"demo unavailable ({err}); using the toy model")
        cfg, model, criterion, batches = toy_parts(32 if args.quick else 128)
        source = "toy"
    if args.every is not None:
        cfg.doctor.every = args.every
    params = list(model.parameters()) + list(criterion.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    probe = batches[0]
    stream = cycle(batches)
    # One cadence period per timed block (at least 10 steps, except in a shorter run).
    block = min(max(cfg.doctor.every, 10), args.steps)
    totals = {"with": 0.0, "without": 0.0}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        state = State(
            model=model,
            criterion=criterion,
            optimizer=opt,
            run_dir=Path(tmp),
            probe_batch=probe,
            batch_size=cfg.data.batch_size,
            max_steps=10**6,
        )
        monitors = build_monitors(cfg)
        fire(monitors, Event.FIT_START, state)
        time_steps([], state, stream, 5)  # warm-up
        done, pair = 0, 0
        while done < args.steps:
            n = min(block, args.steps - done)
            arms = ("with", "without") if pair % 2 == 0 else ("without", "with")  # ABBA
            took = {}
            for arm in arms:
                state.step = 0  # both arms see the same cadence (one measurement per block)
                took[arm] = time_steps(monitors if arm == "with" else [], state, stream, n)
                totals[arm] += took[arm]
            ratios.append(took["with"] / took["without"])
            done, pair = done + n, pair + 1
    ratios.sort()
    result = {
        "doctor_overhead": round(ratios[len(ratios) // 2], 4),  # median over block pairs
        "overhead_of_totals": round(totals["with"] / totals["without"], 4),
        "step_ms_with": round(1000 * totals["with"] / args.steps, 3),
        "step_ms_without": round(1000 * totals["without"] / args.steps, 3),
        "every": cfg.doctor.every,
        "steps_per_arm": args.steps,
        "model": source,
        "device": "cpu",
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
