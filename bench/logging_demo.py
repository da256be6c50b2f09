"""Logging overhead on the demo model: `contrastkit train examples/digits.yaml` with every
sink on (metrics.jsonl at the default cadence, TensorBoard, progress lines) versus off.

Each arm is a fresh `python -m contrastkit train` subprocess; the figure is the engine's
own fit time (`train/seconds` in summary.json: training steps only, no validation since
`data.val_split` is unset, no final-evaluation time). Arms alternate and the best of
`--repeats` is kept, because the machine's load drifts. Last line:
`RESULT {"logging_overhead_demo": t_on / t_off}`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["train.epochs=1", "train.max_steps=45", "data.val_split=null", "doctor.enabled=false"]
ON = ["train.log_every=10", "train.loggers.tensorboard=true", "train.progress=plain"]
OFF = ["train.log_every=100000", "train.loggers.tensorboard=false", "train.progress=none"]


def fit_seconds(overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable,
            "-m",
            "contrastkit",
            "train",
            str(ROOT / "examples" / "digits.yaml"),
        ]
        args += ["--run-dir", str(Path(tmp) / "run")]
        for o in [*COMMON, *overrides]:
            args += ["-o", o]
        subprocess.run(args, check=True, capture_output=True)
        return json.loads((Path(tmp) / "run" / "summary.json").read_text())["train/seconds"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    repeats = ap.parse_args().repeats
    on, off = [], []
    for _ in range(repeats):
        off.append(fit_seconds(OFF))
        on.append(fit_seconds(ON))
    t_on, t_off = min(on), min(off)
    print(f"fit time of 45 demo steps: logging off {t_off:.2f} s, on {t_on:.2f} s")
    print("RESULT " + json.dumps({"logging_overhead_demo": round(t_on / t_off, 3)}))


if __name__ == "__main__":
    main()
