"""Logging overhead on the demo model: `contrastkit train examples/digits.yaml` with every
sink on (metrics.jsonl at the default cadence, TensorBoard, progress lines) versus off.

Each arm is a fresh `python -m contrastkit train` subprocess; the figure is the engine's
own fit time (`train/seconds` in summary.json: training steps only, no validation since
`data.val_split` is unset, no final-evaluation time). Arms alternate and the best of
`--repeats` is kept, because the machine's load drifts. Last line:
`RESULT {"logging_overhead_demo": t_on / t_off}`. `--quick`: one pair of 3-step runs of
batch 32 without evaluation, a smoke run of both arms.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["train.epochs=1", "data.val_split=null", "doctor.enabled=false"]
# The quick run: a small batch of the first rows, and no evaluation.
QUICK = ["data.max_rows=256", "data.batch_size=32", "eval.splits=[]", "eval.at_start=false"]
ON = ["train.log_every=10", "train.loggers.tensorboard=true", "train.progress=plain"]
OFF = ["train.log_every=100000", "train.loggers.tensorboard=false", "train.progress=none"]


def fit_seconds(overrides: list[str], steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable,
            "-m",
            "contrastkit",
            "train",
            str(ROOT / "examples" / "digits.yaml"),
        ]
        args += ["--run-dir", str(Path(tmp) / "run")]
        for o in [*COMMON, f"train.max_steps={steps}", *overrides]:
            args += ["-o", o]
        subprocess.run(args, check=True, capture_output=True)
        return json.loads((Path(tmp) / "run" / "summary.json").read_text())["train/seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=45, help="training steps per run")
    ap.add_argument("--quick", action="store_true", help="one pair of 3 small steps, no evaluation")
    args = ap.parse_args()
    extra = QUICK if args.quick else []
    if args.quick:
        args.repeats, args.steps = 1, 3
    on, off = [], []
    for _ in range(args.repeats):
        off.append(fit_seconds([*OFF, *extra], args.steps))
        on.append(fit_seconds([*ON, *extra], args.steps))
    t_on, t_off = min(on), min(off)
    print(f"fit time of {args.steps} demo steps: logging off {t_off:.2f} s, on {t_on:.2f} s")
    result = {"logging_overhead_demo": round(t_on / t_off, 3), "steps": args.steps}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
