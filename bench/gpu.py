"""Benchmark: GPU training throughput of contrastkit's engine against a bare PyTorch loop.

The model is CLIP ViT-B/16-sized with random weights: a ViT image tower (width 768, 12
layers, 12 heads, 16 px patches, 224 x 224 x 3 images) and a 12-layer text transformer
(width 512, 8 heads, 77 tokens), 512-d embeddings, the CLIP loss. The data are generated
and held on the GPU (one batch reused), so the loader is out of the measurement and the
comparison is engine against loop:

(a) contrastkit's engine (`Engine.fit`) with bf16 autocast, gradient clipping, the LR
    schedule, logging and the doctor's monitors at their default cadence;
(b) a bare loop of the same model and loss: autocast forward, backward, AdamW step.

Both run `--steps` steps after `--warmup` steps; time is taken between CUDA-synchronised
step ends, so checkpoint writing at the end of the engine's epoch is excluded. Run with
`torch.compile` off and on (the model's towers compiled; the loss stays eager).

`RESULT {"samples_per_s", "vs_bare_loop", "peak_mem_gb", "compiled": {...}}`; the target
is vs_bare_loop >= 0.95. Needs a CUDA device (`--device cpu --tiny` is a smoke run;
`--quick` a faster one: tiny towers on 32 px images and 16 tokens, two steps, and the
`eager` compile backend, which traces the towers with torch.compile but generates no code).

    python bench/gpu.py --batch 256 --steps 50
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from contrastkit.config import config_from_dict
from contrastkit.events import Callback
from contrastkit.train.distributed import DistInfo

VOCAB, TEXT_LENGTH, IMAGE = 49408, 77, 224


def make_config(device: str, tiny: bool, steps: int, image: int = IMAGE) -> object:
    """ViT-B/16 + 12-layer text tower (or a tiny version for a CPU smoke run)."""
    vit = {"type": "vit", "width": 768, "depth": 12, "heads": 12, "options": {"patch_size": 16}}
    text = {"type": "builtin_text", "width": 512, "depth": 12, "heads": 8}
    if tiny:
        vit = {**vit, "width": 32, "depth": 1, "heads": 2}
        text = {**text, "width": 32, "depth": 1, "heads": 2}
    return config_from_dict(
        {
            "name": "gpu-bench",
            "data": {"manifest": "unused.jsonl", "image": {"size": image, "channels": 3}},
            "model": {
                "embed_dim": 64 if tiny else 512,
                "towers": {
                    "image": {"streams": {"image": vit}},
                    "text": {"streams": {"text": text}},
                },
            },
            "loss": {"objectives": [{"name": "clip", "type": "clip", "towers": ["image", "text"]}]},
            "train": {
                "epochs": 1,
                "max_steps": steps,
                "device": device,
                "amp": "bf16",
                "grad_clip": 1.0,
                "progress": "none",
                "log_every": 10,
                "loggers": {"tensorboard": False},
            },
        }
    )


def make_batch(n: int, device: torch.device, image: int = IMAGE, length: int = TEXT_LENGTH) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    ids = torch.randint(4, VOCAB, (n, length), device=device, generator=g)
    return {
        "image": torch.randn(n, 3, image, image, device=device, generator=g),
        "text": ids,
        "text_mask": torch.ones(n, length, dtype=torch.bool, device=device),
        "group_ids": torch.arange(n, device=device),
        "ids": [str(i) for i in range(n)],
    }


def build(cfg, device: torch.device, args):
    from contrastkit.losses import build_loss
    from contrastkit.models import build_model

    torch.manual_seed(0)
    tokenizer = SimpleNamespace(vocab_size=VOCAB, max_length=args.text_length, pad_id=0)
    specs = {"image": (3, args.image, args.image), "text": ()}
    model = build_model(cfg.model, tokenizer=tokenizer, input_specs=specs).to(device)
    if args.compile:
        for name, tower in model.towers.items():
            model.towers[name] = torch.compile(tower, backend=args.compile_backend)
    return model, build_loss(cfg.loss).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StepClock(Callback):
    """Synchronised wall time at the end of every step."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.times = device, []

    def on_batch_end(self, state) -> None:
        _sync(self.device)
        self.times.append(time.perf_counter())


def engine_rate(cfg, batch: dict, args, device: torch.device) -> float:
    from contrastkit.doctor import build_monitors
    from contrastkit.train.engine import Engine
    from contrastkit.train.engine.parts import EngineParts
    from contrastkit.train.phases import make_weights_fn

    model, loss = build(cfg, device, args)
    clock = StepClock(device)
    total = args.warmup + args.steps
    parts = EngineParts(
        model=model,
        criterion=loss,
        make_loader=lambda epoch, start: [batch] * (total - start),
        steps_per_epoch=total,
        weights=make_weights_fn(cfg.loss, cfg.train.phases),
        callbacks=[*build_monitors(cfg), clock],
        config=cfg,
        probe_batch=batch,
    )
    with tempfile.TemporaryDirectory() as tmp:
        Engine(cfg.train, parts, Path(tmp), dist=DistInfo(device=device)).fit()
    times = clock.times[args.warmup - 1 :]
    return args.steps * len(batch["ids"]) / (times[-1] - times[0])


def bare_rate(cfg, batch: dict, args, device: torch.device) -> float:
    model, loss = build(cfg, device, args)
    params = [*model.parameters(), *loss.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    weights = {"clip": 1.0}
    times = []
    for _ in range(args.warmup + args.steps):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = loss(model(batch), batch, weights)
        out.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter())
    times = times[args.warmup - 1 :]
    return args.steps * len(batch["ids"]) / (times[-1] - times[0])


def measure(args, device: torch.device) -> dict:
    cfg = make_config(str(device), args.tiny, args.warmup + args.steps, args.image)
    batch = make_batch(args.batch, device, args.image, args.text_length)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    engine = engine_rate(cfg, batch, args, device)
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    bare = bare_rate(cfg, batch, args, device)
    print(
        f"compile={args.compile}: engine {engine:.1f}, bare loop {bare:.1f} samples/s", flush=True
    )
    return {
        "samples_per_s": round(engine, 1),
        "bare_loop_samples_per_s": round(bare, 1),
        "vs_bare_loop": round(engine / bare, 3),
        "peak_mem_gb": None if peak is None else round(peak, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny towers (CPU smoke run)")
    parser.add_argument("--image", type=int, default=IMAGE, help="image side in pixels")
    parser.add_argument("--text-length", type=int, default=TEXT_LENGTH, help="text tokens")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend")
    parser.add_argument(
        "--quick", action="store_true", help="CPU smoke run of both passes in seconds"
    )
    args = parser.parse_args()
    if args.quick:
        args.device, args.tiny, args.image, args.text_length = "cpu", True, 32, 16
        args.batch, args.steps, args.warmup, args.compile_backend = 4, 1, 1, "eager"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA device (use --device cpu --tiny to smoke-test)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"device: {torch.cuda.get_device_name()}", flush=True)
    args.compile = False
    eager = measure(args, device)
    args.compile = True
    compiled = measure(args, device)
    print("RESULT " + json.dumps({**eager, "compiled": compiled, "device": str(device)}))


if __name__ == "__main__":
    main()
