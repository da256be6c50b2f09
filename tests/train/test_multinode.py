"""Two torchrun "nodes" on this machine (`--nnodes 2 --nproc_per_node 1`, c10d rendezvous)
train exactly like one process on the same global batch: the contrastive loss gathers
embeddings across nodes, so every row still sees the other node's rows as negatives (with
local negatives only, the parameters would differ after the first step)."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

EXAMPLE = Path(__file__).parents[2] / "examples" / "digits.yaml"
TORCHRUN = Path(sys.executable).parent / "torchrun"
COMMON = [
    "data.max_rows=120",
    "train.max_steps=3",
    "train.epochs=1",
    "train.progress=none",
    "train.loggers.tensorboard=false",
    "doctor.enabled=false",
    "eval.splits=[val]",
]


def _args(run_dir: Path, batch: int) -> list[str]:
    args = ["train", str(EXAMPLE), "--run-dir", str(run_dir)]
    for o in [*COMMON, f"data.batch_size={batch}"]:
        args += ["-o", o]
    return args


def _params(run_dir: Path) -> dict:
    (path,) = glob.glob(str(run_dir / "checkpoints" / "step_000003" / "*.safetensors"))
    tensors = load_file(path)
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "criterion."))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.dist
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun missing")
def test_two_nodes_equal_one_process(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "contrastkit", *_args(tmp_path / "one", batch=40)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    port = _free_port()
    node = [
        str(TORCHRUN), "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
        "--rdzv_endpoint", f"localhost:{port}", "--rdzv_id", "multinode-test",
        "-m", "contrastkit", *_args(tmp_path / "two", batch=20),  # 2 x 20 = 40 rows a step
    ]  # fmt: skip
    launches = [
        subprocess.Popen(node, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in launches]
    for p, (_, err) in zip(launches, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    a, b = _params(tmp_path / "one"), _params(tmp_path / "two")
    assert a.keys() == b.keys() and a
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst < 1e-4, worst
