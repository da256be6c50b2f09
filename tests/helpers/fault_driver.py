"""Fault injection for the toy engine: a real process that SIGKILLs itself at a chosen point.

`PYTHONPATH=tests python tests/helpers/fault_driver.py RUN_DIR POINT N [resume]` trains the toy run of `run()` and kills
itself (SIGKILL: no cleanup, no flush, no finally) at the N-th occurrence of POINT:

- `mid_checkpoint`: the checkpoint's tensors are written and half of its state.json;
- `mid_metrics`: half of a metrics.jsonl line is written and flushed;
- `during_eval`: inside an evaluation (after the epoch's checkpoint was written);
- `at_step`: at the end of optimizer step N.

`none` runs to the end. Imported as `helpers.fault_driver` by tests/train/test_faults.py,
which also resumes and compares in-process.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from contrastkit.events import Callback
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.loggers import JsonlSink
from helpers.train_toys import toy_engine, toy_train_config

POINTS = ("mid_checkpoint", "mid_metrics", "during_eval", "at_step")
STEPS = 18  # 3 epochs x 6 steps (48 rows, 8 per step)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(point: str, n: int, engine) -> None:
    """Patch the engine's process so it dies at the n-th `point`."""
    count = {"seen": 0}

    def hit() -> bool:
        count["seen"] += 1
        return count["seen"] == n

    if point == "mid_checkpoint":
        real_meta = ckpt_files._write_meta

        def write_meta(path, meta):
            if hit():
                text = json.dumps(dict(meta))
                path.write_text(text[: len(text) // 2])
                _die()
            real_meta(path, meta)

        ckpt_files._write_meta = write_meta
    elif point == "mid_metrics":
        real_log = JsonlSink.log

        def log(self, metrics, step):
            if hit():
                line = json.dumps({"step": step, **metrics})
                self.file.write(line[: len(line) // 2])
                self.file.flush()
                _die()
            real_log(self, metrics, step)

        JsonlSink.log = log
    elif point == "during_eval":
        real_eval = engine.parts.evaluate

        def evaluate(model):
            if hit():
                _die()
            return real_eval(model)

        engine.parts.evaluate = evaluate
    elif point == "at_step":

        class Killer(Callback):
            def on_batch_end(self, state) -> None:
                if state.step == n:
                    _die()

        engine.callbacks[0] = Killer()
    elif point != "none":
        raise ValueError(point)


def run(run_dir: str | Path, point: str = "none", n: int = 0, *, resume: bool = False) -> dict:
    """The toy run (checkpoint every 2 steps, keep 3); returns and saves params + metrics."""
    run_dir = Path(run_dir)
    cfg = toy_train_config(accumulate=2, checkpoint={"every_steps": 2, "keep_last": 3})
    engine = toy_engine(run_dir, cfg, callbacks=[Callback()])
    _arm(point, n, engine)
    summary = engine.fit(resume="auto" if resume else None)
    result = {
        "summary": summary,
        "params": {k: v.tolist() for k, v in engine.model.state_dict().items()},
        "criterion": {k: v.tolist() for k, v in engine.criterion.state_dict().items()},
    }
    (run_dir / "final.json").write_text(json.dumps(result))
    return result


def losses(run_dir: Path) -> list[tuple[int, float]]:
    """(step, train/loss) of every training record in metrics.jsonl, in file order."""
    out = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "train/loss" in rec:
            out.append((rec["step"], rec["train/loss"]))
    return out


def evals(run_dir: Path) -> list[int]:
    """Steps of the evaluation records in metrics.jsonl."""
    recs = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in recs if "val/a_to_b/R@1" in r]


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]), resume="resume" in sys.argv[4:])
