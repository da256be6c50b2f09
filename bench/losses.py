"""Speed and memory of contrastkit's CLIP / SigLIP losses vs open_clip, in one run.

Every row (implementation, batch size) runs in a fresh subprocess so peak memory is not
polluted by earlier rows. In the child, inputs (B x D float32, requires_grad) are allocated
first, then the baseline `ru_maxrss` is read; one forward + backward is run and the peak
extra memory is `ru_maxrss` after minus the baseline. Time is the best of a few
forward + backward runs. The "matmul bound" is 3 x the time of one B x D · D x B matmul
(forward logits + the two gradient matmuls), timed inside each row's process right after
the loss (the machine may be shared, so a row's ratio uses a matmul timed seconds apart).

open_clip (installed with --no-deps) is loaded from `open_clip/loss.py` by file path, so
its package `__init__` (which imports torchvision) never runs.

Without open_clip installed its rows are skipped (with the reason printed) and the
ratios to it are null.

Usage:
    python bench/losses.py            # B in {1024, 4096, 16384}
    python bench/losses.py --quick    # B = 1024 (smoke run)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

DIM = 512
IMPLS = ("ours_clip", "open_clip_clip", "ours_siglip", "open_clip_siglip")


def _open_clip_loss_file() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / "open_clip" / "loss.py"


def _load_open_clip_loss():
    path = _open_clip_loss_file()
    spec = importlib.util.spec_from_file_location("open_clip_loss_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make_step(impl: str, a, b):
    """A closure running one forward + backward of `impl` on a, b."""
    import torch

    from contrastkit.losses import ClipLoss, SiglipLoss

    groups = torch.arange(a.shape[0])
    if impl == "matmul":
        return lambda: a.detach() @ b.detach().T
    if impl == "ours_clip":
        loss = ClipLoss()
        return lambda: loss(a, b, groups).loss.backward()
    if impl == "ours_siglip":
        loss = SiglipLoss(block_size=1024)
        return lambda: loss(a, b, groups).loss.backward()
    oc = _load_open_clip_loss()
    if impl == "open_clip_clip":
        loss, log_scale = oc.ClipLoss(), torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        return lambda: loss(a, b, log_scale.exp()).backward()
    if impl == "open_clip_siglip":
        loss = oc.SigLipLoss()
        t = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        bias = torch.nn.Parameter(torch.tensor(-10.0))
        return lambda: loss(a, b, t.exp(), bias).backward()
    raise ValueError(f"unknown implementation {impl!r}")


def run_row(impl: str, batch: int, repeats: int) -> dict:
    """Child process: time and peak extra memory of one implementation at one size."""
    import torch

    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(batch, DIM), dim=1).requires_grad_()
    b = torch.nn.functional.normalize(torch.randn(batch, DIM), dim=1).requires_grad_()
    step = _make_step(impl, a, b)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(repeats):
        a.grad = b.grad = None
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kib
    # The row's own matmul time: the machine is shared, so each ratio to the bound uses a
    # matmul timed in the same process, seconds after the loss (after
    # the memory reading, so its B x B result does not count).
    mm_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a.detach() @ b.detach().T
        mm_times.append(time.perf_counter() - start)
    return {
        "impl": impl,
        "batch": batch,
        "time_s": min(times),
        "matmul_s": min(mm_times),
        "peak_mib": peak_kib / 1024,
    }


def _spawn(impl: str, batch: int, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--row", impl, str(batch), str(repeats)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B = 1024 (smoke run)")
    parser.add_argument("--row", nargs=3, metavar=("IMPL", "B", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        impl, batch, repeats = args.row
        print(json.dumps(run_row(impl, int(batch), int(repeats))))
        return 0
    sizes = (1024,) if args.quick else (1024, 4096, 16384)
    impls = IMPLS
    if not _open_clip_loss_file().exists():
        print(f"open_clip skipped: {_open_clip_loss_file()} not found (not installed)")
        impls = tuple(i for i in IMPLS if not i.startswith("open_clip"))
    rows: dict[tuple[str, int], dict] = {}
    print(f"{'impl':<18}{'B':>7}{'time s':>10}{'mm s':>10}{'peak MiB':>11}{'x bound':>9}")
    for batch in sizes:
        repeats = 2 if args.quick or batch > 4096 else 5
        for impl in impls:
            r = rows[impl, batch] = _spawn(impl, batch, repeats)
            ratio = r["time_s"] / (3 * r["matmul_s"])
            print(
                f"{impl:<18}{batch:>7}{r['time_s']:>10.3f}{r['matmul_s']:>10.3f}"
                f"{r['peak_mib']:>11.0f}{ratio:>9.2f}"
            )
            sys.stdout.flush()
    big = sizes[-1]

    def get(impl: str, key: str) -> float:
        return rows[impl, big][key]

    def vs_bound(impl: str) -> float:
        return round(get(impl, "time_s") / (3 * get(impl, "matmul_s")), 3)

    def vs_open_clip(ours: str, theirs: str, key: str) -> float | None:
        if (theirs, big) not in rows:
            return None
        return round(get(ours, key) / max(get(theirs, key), 1e-9), 3)

    result = {
        "batch": big,
        "clip_time_vs_bound": vs_bound("ours_clip"),
        "clip_time_vs_open_clip": vs_open_clip("ours_clip", "open_clip_clip", "time_s"),
        "siglip_time_vs_bound": vs_bound("ours_siglip"),
        "siglip_time_vs_open_clip": vs_open_clip("ours_siglip", "open_clip_siglip", "time_s"),
        "siglip_peak_mem_vs_open_clip": vs_open_clip("ours_siglip", "open_clip_siglip", "peak_mib"),
    }
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
