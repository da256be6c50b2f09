"""Benchmark: the frozen-feature cache (LiT). Epoch 1 encodes, epoch 2 reads the cache.

Both towers of examples/pydoc_minilm.yaml (docstring `text`, code `text_code`, one
siamese all-MiniLM-L6-v2) are frozen with one config line, `train.freeze:
[towers.doc.encoders]`, and each gets a trainable linear projection; the run goes through
contrastkit's real train path. Epoch time = from `epoch_start` to the last `batch_end`
(checkpointing and evaluation excluded; validation is off). The cache folder is fresh,
so epoch 1 runs MiniLM on every train input and epoch 2 only reads the cache.

    python bench/lit_cache.py              # 512 train pairs, 2 epochs (~2 min on 2 cores)
    python bench/lit_cache.py --quick      # 32 pairs, batch 16: a smoke run of the same path

Last line: RESULT {"lit_epoch_speedup": epoch-1 time / epoch-2 time, ...}; target >= 5.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from contrastkit.app.run import train
from contrastkit.config import load_config
from contrastkit.events import Callback, State

EXAMPLE = Path(__file__).parents[1] / "examples" / "pydoc_minilm.yaml"


class EpochTimer(Callback):
    """Wall time from each epoch's start to its last optimizer step."""

    def __init__(self) -> None:
        self.start = 0.0
        self.last = 0.0
        self.epochs: list[float] = []

    def on_epoch_start(self, state: State) -> None:
        self.start = time.perf_counter()

    def on_batch_end(self, state: State) -> None:
        self.last = time.perf_counter()

    def on_epoch_end(self, state: State) -> None:
        self.epochs.append(self.last - self.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=512, help="train pairs (max_rows)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the example's")
    parser.add_argument("--quick", action="store_true", help="32 pairs, batch 16 (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.batch_size = 32, 16  # two steps per epoch
    batch = [] if args.batch_size is None else [f"data.batch_size={args.batch_size}"]
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_dir = Path(tempfile.mkdtemp(prefix="ck-lit-"))
    cfg = load_config(
        EXAMPLE,
        [
            f"data.max_rows={args.rows}",
            "data.val_split=null",
            "data.hard_negatives=null",  # the example mines; this bench times the cache only
            "train.epochs=2",
            "train.freeze=[towers.doc.encoders]",
            "model.towers.doc.projection.type=linear",
            "model.towers.code.projection.type=linear",
            "model.embed_dim=384",
            "train.lr=1.0e-3",
            "train.progress=none",
            "train.device=cpu",
            "eval.splits=[]",
            "eval.at_start=false",
            "train.loggers.tensorboard=false",
            "doctor.enabled=false",
            *batch,
        ],
    )
    timer = EpochTimer()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    try:
        summary = train(cfg, run_dir, callbacks=[timer])
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    e1, e2 = timer.epochs[:2]
    encoded = int(summary.get("feature_cache/0/encoded", 0))
    print(f"train pairs {args.rows}, steps/epoch {int(summary['train/steps']) // 2}")
    print(f"epoch 1 (encodes {encoded} inputs): {e1:.2f} s; epoch 2 (cache): {e2:.3f} s")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    result = {
        "lit_epoch_speedup": round(e1 / e2, 1),
        "epoch1_s": round(e1, 2),
        "epoch2_s": round(e2, 3),
        "encoded_inputs": encoded,
        "rows": args.rows,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
