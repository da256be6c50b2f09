"""Watcher overhead: step time of a plain PyTorch CLIP loop with `contrastkit.doctor.attach`
vs without, and the plain loop the host tests train (`train_plain`).

The loop is deliberately foreign to contrastkit: two MLP towers over scikit-learn's real
8 x 8 digits (tower `image` sees the pixels, tower `view` a noisy copy of the same
pixels), a hand-written symmetric CLIP loss with a learnable log-scale, AdamW. Timed
blocks of one watcher cadence (`--every` steps) alternate between the two arms (ABBA
order) and the median of the per-pair ratios is reported, so load from other processes
hits both arms alike (the method of bench/doctor.py).

    python bench/watcher.py [--quick] [--steps 400] [--batch-size 256] [--width 1024]

Last line: RESULT {"watcher_overhead": with / without, ...}.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.doctor import attach


def digits_views(seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """scikit-learn's 1,797 real digits as two views (pixels, noisy pixels) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    g = torch.Generator().manual_seed(seed)
    noisy = x + 0.3 * torch.randn(x.shape, generator=g)
    return x, noisy, torch.tensor(digits.target)


class TwoTower(nn.Module):
    """Two MLP towers and CLIP's learnable log-scale (`logit_scale`, exp = 1 / tau); with
    `classes`, a classification head on the image tower (an auxiliary term's head)."""

    def __init__(
        self, width: int = 64, dim: int = 32, temperature: float = 0.07, classes: int = 0
    ) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, dim))
        self.view = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.classify = nn.Linear(dim, classes) if classes else None

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return F.normalize(self.image(x), dim=-1), F.normalize(self.view(y), dim=-1)


def clip_loss(a: Tensor, b: Tensor, scale: Tensor) -> Tensor:
    """CLIP's symmetric cross-entropy, each row its own class."""
    logits = scale * a @ b.T
    target = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def train_plain(
    run_dir: str | Path | None,
    *,
    steps: int = 40,
    batch_size: int = 32,
    lr: float = 1e-2,
    temperature: float = 0.07,
    learnable: bool = True,
    aux_weight: float = 0.0,
    weight_decay: float = 0.0,
    width: int = 64,
    every: int = 5,
    seed: int = 0,
    write: bool = True,
    accumulate: int = 1,
) -> list[Any]:
    """Train `TwoTower` with a plain loop; with `run_dir`, the watcher attached.

    `aux_weight > 0` adds an auxiliary term (`classification`: the digit's label from the
    image tower's output through a linear head, cross-entropy) at that weight, as a
    captioning or classifier head shares a contrastkit tower.
    `accumulate > 1` sums the gradients of that many micro-batches of `batch_size` rows
    per optimizer step, one loss each (naive accumulation), each observed.
    Returns the watcher's findings as dicts ([] without `run_dir`); `write=False`
    diagnoses without closing (no files, no plot: the fast path for tests).
    """
    torch.manual_seed(seed)
    x, noisy, labels = digits_views(seed)
    model = TwoTower(width, temperature=temperature, classes=10 if aux_weight > 0 else 0)
    model.logit_scale.requires_grad_(learnable)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    weights = {"contrastive": 1.0, "classification": aux_weight}
    watcher = None
    if run_dir is not None:
        watcher = attach(
            model, opt, run_dir=run_dir, batch_size=batch_size, towers=("image", "view"),
            weights=weights, learnable_temperature=learnable, every=every,
        )  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        for _ in range(accumulate):
            idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
            a, b = model(x[idx], noisy[idx])
            scale = model.logit_scale.exp()
            contrastive = clip_loss(a, b, scale)
            terms = {"contrastive": contrastive}
            if model.classify is not None:
                logits = model.classify(model.image(x[idx]))
                terms["classification"] = F.cross_entropy(logits, labels[idx])
            loss = sum(weights[k] * v for k, v in terms.items())
            if watcher is not None:
                watcher.observe(loss, terms=terms, embeddings=(a, b), logit_scale=scale)
            (loss / accumulate).backward()
        opt.step()
    if watcher is None:
        return []
    return [f.to_dict() for f in (watcher.close() if write else watcher.diagnose())]


def _arm(width: int, watched: bool, run_dir: Path, args: argparse.Namespace) -> Any:
    torch.manual_seed(0)
    model = TwoTower(width)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    watcher = None
    if watched:
        watcher = attach(
            model, opt, run_dir=run_dir, batch_size=args.batch_size,
            towers=("image", "view"), every=args.every,
        )  # fmt: skip
    return model, opt, watcher


def _block(arm: Any, x: Tensor, y: Tensor, steps: int, batch: int, g: torch.Generator) -> float:
    model, opt, watcher = arm
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        a, b = model(x[idx], y[idx])
        scale = model.logit_scale.exp()
        loss = clip_loss(a, b, scale)
        if watcher is not None:
            watcher.observe(loss, embeddings=(a, b), logit_scale=scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time both arms and print RESULT {json}."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=400, help="timed steps per arm")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=int, default=1024, help="hidden width of each tower")
    p.add_argument("--every", type=int, default=25, help="watcher cadence (doctor.every)")
    p.add_argument("--quick", action="store_true", help="a few blocks of a small model (seconds)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.width, args.batch_size, args.every = 20, 64, 32, 5
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 2)))
    x, y, _ = digits_views()
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        plain = _arm(args.width, False, Path(tmp) / "plain", args)
        watched = _arm(args.width, True, Path(tmp) / "watched", args)
        _block(plain, x, y, args.every, args.batch_size, g)  # warm-up: allocator, first-call costs
        _block(watched, x, y, args.every, args.batch_size, g)
        ratios, times = [], {"plain": 0.0, "watched": 0.0}
        for i in range(max(1, args.steps // args.every)):
            order = [("plain", plain), ("watched", watched)]
            if i % 2:
                order.reverse()  # ABBA: neither arm always runs first
            t = {name: _block(arm, x, y, args.every, args.batch_size, g) for name, arm in order}
            times["plain"] += t["plain"]
            times["watched"] += t["watched"]
            ratios.append(t["watched"] / t["plain"])
        findings = watched[2].close(report=False)
    result = {
        "watcher_overhead": round(statistics.median(ratios), 4),
        "blocks": len(ratios),
        "steps_per_arm": len(ratios) * args.every,
        "every": args.every,
        "batch_size": args.batch_size,
        "width": args.width,
        "plain_step_ms": round(1000 * times["plain"] / (len(ratios) * args.every), 3),
        "watched_step_ms": round(1000 * times["watched"] / (len(ratios) * args.every), 3),
        "findings": [f.code for f in findings],
    }
    print("RESULT " + json.dumps(result))
    return result


if __name__ == "__main__":
    main()
