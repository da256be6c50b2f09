"""Benchmark: contrastkit's image loader against the per-core limit (bare PIL decode + resize).

Generates N JPEGs (256 x 256 RGB, quality 90; smooth gradients plus noise, so they decode
like photos rather than like noise), then measures rows per second for

(a) the limit: a bare loop of PIL `open` + `convert("RGB")` + bilinear `resize` to 224 and
    `torch.from_numpy`, in this process (one core);
(b) contrastkit's manifest loader (`build_datasets` + `build_loader`, batches of 64,
    224 x 224 x 3) with 0, 1 and 2 workers: decoding, resizing and collating in workers;
    8-bit pixels stay uint8 and are normalised by the model on its device
    (`contrastkit/pixels.py`), as in training;
(c) the same images written by `contrastkit shard` and streamed through `data.shards`
    with 0, 1 and 2 workers.

`loader_vs_pil` = (b) with 0 workers / (a) (target >= 0.8: the loader adds little to the
decode); `worker_scaling_2` = (b) with 2 workers / 1 worker (target >= 1.7 on an idle
2-core machine; every worker process is one more core busy). The machine's load average
is printed beside the figures: on a shared machine scaling is capped by the idle cores.

    python bench/loader.py                # N = 20000
    python bench/loader.py --n 4000       # quicker
    python bench/loader.py --quick        # 128 JPEGs, 0 and 1 workers: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from contrastkit.config import DataConfig
from contrastkit.data import build_datasets, build_loader
from contrastkit.data.shards.loaders import build_stream_loader
from contrastkit.data.shards.writer import write_shards

SOURCE_SIZE, TARGET_SIZE, BATCH = 256, 224, 64


def make_jpegs(folder: Path, n: int) -> Path:
    """N JPEGs and a manifest (cached in `folder` across runs)."""
    manifest = folder / "manifest.jsonl"
    if manifest.exists() and sum(1 for _ in manifest.open()) == n:
        return manifest
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SOURCE_SIZE, 0:SOURCE_SIZE] / SOURCE_SIZE
    rows = []
    for i in range(n):
        a, b, c = rng.random(3)
        base = np.stack([a * xx + (1 - a) * yy, b * yy, c * (1 - xx)], axis=-1) * 200
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
        rows.append({"id": f"r{i}", "image": f"{i:06d}.jpg", "text": f"image {i}"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def pil_limit(folder: Path, n: int) -> float:
    """Rows per second of a bare PIL decode + resize loop (one core)."""
    warnings.filterwarnings("ignore", "The given NumPy array is not writable")
    start = time.perf_counter()
    for i in range(n):
        with Image.open(folder / f"{i:06d}.jpg") as img:
            small = img.convert("RGB").resize((TARGET_SIZE, TARGET_SIZE), Image.BILINEAR)
            torch.from_numpy(np.asarray(small))
    return n / (time.perf_counter() - start)


def rows_per_s(loader) -> tuple[float, int]:
    start, rows = time.perf_counter(), 0
    for batch in loader:
        rows += len(batch["ids"])
    return rows / (time.perf_counter() - start), rows


def data_cfg(**kw) -> DataConfig:
    return DataConfig(
        image={"size": TARGET_SIZE, "channels": 3}, batch_size=BATCH, drop_last=False, **kw
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="number of JPEGs")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shard-size", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="128 JPEGs, 0 and 1 workers")
    args = parser.parse_args()
    if args.quick:
        args.n, args.workers, args.shard_size = 128, [0, 1], 64
    folder = Path(tempfile.gettempdir()) / f"contrastkit-bench-loader-{args.n}"
    folder.mkdir(exist_ok=True)
    manifest = make_jpegs(folder, args.n)
    print(f"N = {args.n} JPEGs {SOURCE_SIZE}px -> {TARGET_SIZE}px in {folder}", flush=True)
    print(f"load average before: {os.getloadavg()}", flush=True)
    torch.set_num_threads(1)  # the decode is per core; workers give the parallelism

    pil = pil_limit(folder, args.n)
    print(f"bare PIL decode + resize: {pil:.0f} rows/s", flush=True)
    manifest_rates, shard_rates = {}, {}
    for w in args.workers:
        cfg = data_cfg(manifest=str(manifest), num_workers=w)
        dataset = build_datasets(cfg).splits["train"]
        loader = build_loader(dataset, cfg, train=True, seed=0, batch_size=BATCH)
        manifest_rates[w], rows = rows_per_s(loader)
        assert rows == args.n, rows
        print(f"manifest loader, {w} workers: {manifest_rates[w]:.0f} rows/s", flush=True)
    shards = folder / "shards"
    if not (shards / "index.json").exists():
        write_shards(manifest, shards, args.shard_size)
    for w in args.workers:
        cfg = data_cfg(shards=str(shards), num_workers=w, val_split=None, test_split=None)
        split = build_datasets(cfg).splits["train"]
        loader = build_stream_loader(
            split, cfg, seed=0, epoch=0, start_batch=0, rank=0, world_size=1, batch_size=BATCH
        )
        shard_rates[w], rows = rows_per_s(loader.loader)  # every row, partial batches too
        assert rows == args.n, rows
        print(f"sharded stream, {w} workers: {shard_rates[w]:.0f} rows/s", flush=True)
    result = {
        "n": args.n,
        "pil_rows_per_s": round(pil, 1),
        "loader_rows_per_s": {w: round(r, 1) for w, r in manifest_rates.items()},
        "shards_rows_per_s": {w: round(r, 1) for w, r in shard_rates.items()},
        "loader_vs_pil": round(manifest_rates[0] / pil, 3) if 0 in manifest_rates else None,
        "worker_scaling_2": round(manifest_rates[2] / manifest_rates[1], 3)
        if {1, 2} <= set(manifest_rates)
        else None,
        "shards_vs_pil": round(shard_rates[0] / pil, 3) if 0 in shard_rates else None,
        "shards_worker_scaling_2": round(shard_rates[2] / shard_rates[1], 3)
        if {1, 2} <= set(shard_rates)
        else None,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
