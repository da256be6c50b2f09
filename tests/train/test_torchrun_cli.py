"""`torchrun --nproc_per_node 2 -m contrastkit train` (gloo, CPU) equals one process on the
same global batch: same parameters after a few steps, same validation metrics, and the
doctor (on) judges both against the same global batch."""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits.yaml"
COMMON = [
    "data.max_rows=120",
    "train.max_steps=3",
    "train.epochs=1",
    "train.progress=none",
    "train.loggers.tensorboard=false",
    "doctor.every=1",
    "eval.splits=[val]",
]


def _run(cmd: list[str], run_dir: Path, batch: int) -> dict:
    args = [*cmd, "train", str(EXAMPLE), "--run-dir", str(run_dir)]
    for o in [*COMMON, f"data.batch_size={batch}"]:
        args += ["-o", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ckpt,) = glob.glob(str(run_dir / "checkpoints" / "step_000003" / "*.safetensors"))
    return load_file(ckpt)


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
    reason="torchrun missing",
)
def test_two_processes_equal_one(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    one = _run([sys.executable, "-m", "contrastkit"], tmp_path / "one", batch=40)
    two = _run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "contrastkit"],
        tmp_path / "two",
        batch=20,  # per process: the global batch is 40 in both runs
    )
    keys = [k for k in one if k.startswith(("model.", "criterion."))]
    assert keys and set(keys) <= set(two)
    worst = max((one[k].double() - two[k].double()).abs().max().item() for k in keys)
    assert worst < 1e-4, worst
    s1 = json.loads((tmp_path / "one" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert s1["val/text_to_image/R@1"] == pytest.approx(s2["val/text_to_image/R@1"])
    # The doctor judges chance-level loss against the *global* batch (40), not the
    # per-rank one (20): the two runs' findings and their evidence must agree.
    for run in ("one", "two"):
        info = json.loads((tmp_path / run / "run.json").read_text())
        assert info["global_batch_size"] == 40
    f1, f2 = (
        {
            f["code"]: f["evidence"]
            for f in json.loads((tmp_path / r / "findings.json").read_text())["findings"]
        }
        for r in ("one", "two")
    )
    assert "loss_at_chance" in f1 and "loss_at_chance" in f2
    assert f1["loss_at_chance"]["batch_size"] == f2["loss_at_chance"]["batch_size"] == 40
