"""Benchmark: contrastkit retrieval metrics vs a bare matmul and vs torchmetrics.

(a) one N×N×D float32 similarity matmul, in row chunks of 4096 × all columns (the plain
    way to hold it in bounded memory; independent of the tiles our metrics use);
(b) all our metrics (Recall@1/5/10/50, median/mean rank, NDCG@5/10, mAP, mAP@R), both
    directions, at N=50k, 1-to-1 groups, and a 5-captions-per-image case (50k × 10k)
    against its own matmul;
(c) torchmetrics RetrievalRecall(top_k=1) at N=5k (flattened N² preds/target/indexes, as
    it requires) vs ours at N=5k; the R@1 values must agree. Ours is timed best of 5,
    torchmetrics best of 2, and so is one bare 5k × 5k matmul: any exact method needs
    that matmul, so torchmetrics ÷ matmul is the ceiling of the speed-up on this machine
    (`speedup_ceiling_matmul`).

Embeddings are random unit vectors with group structure: a positive is its anchor plus
isotropic noise (cosine ≈ 0.16), so ranks are neither trivial nor random.

    python bench/retrieval.py            # full (a few minutes on 2 cores)
    python bench/retrieval.py --quick    # smoke (N shrunk)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

import torch

from contrastkit.eval.retrieval import retrieval_metrics


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=1)


def noisy_copy(anchor: torch.Tensor, g: torch.Generator, noise: float = 6.0) -> torch.Tensor:
    d = anchor.shape[1]
    return unit(anchor + noise * torch.randn(anchor.shape, generator=g) / d**0.5)


def chunked_matmul(a: torch.Tensor, b: torch.Tensor, rows: int = 4096) -> None:
    """The full a·bᵀ, `rows` query rows at a time against the whole gallery."""
    for r0 in range(0, len(a), rows):
        a[r0 : r0 + rows] @ b.T


def best_of(repeats: int, fn, *args, **kwargs):
    """(result, best wall seconds, CPU seconds of that run) over `repeats` runs."""
    best = None
    for _ in range(repeats):
        out = timed(fn, *args, **kwargs)
        if best is None or out[1] < best[1]:
            best = out
    return best


def timed(fn, *args, **kwargs):
    """(result, wall seconds, CPU seconds of this process). On a shared machine the CPU
    time is the steadier measure of the work itself."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def torchmetrics_recall(a: torch.Tensor, b: torch.Tensor) -> float:
    from torchmetrics.retrieval import RetrievalRecall

    n = len(a)
    preds = (a @ b.T).flatten()
    target = torch.eye(n, dtype=torch.bool).flatten()
    indexes = torch.arange(n).repeat_interleave(n)
    return RetrievalRecall(top_k=1)(preds, target, indexes=indexes).item()


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-size", type=int, default=1024)
    args = parser.parse_args()
    n_big, n_img, n_tm = (4000, 800, 500) if args.quick else (50_000, 10_000, 5_000)
    g = torch.Generator().manual_seed(0)
    print(f"cpu: {cpu_name()}, torch threads: {torch.get_num_threads()}, torch {torch.__version__}")
    rows = []

    # (a) + (b): 1-to-1 groups, N x N.
    a = unit(torch.randn(n_big, args.dim, generator=g))
    b = noisy_copy(a, g)
    ids = torch.arange(n_big)
    _, t_mm, c_mm = timed(chunked_matmul, a, b)
    ours, t_ours, c_ours = timed(retrieval_metrics, a, b, ids, ids, chunk_size=args.chunk_size)
    ratio, cpu_ratio = t_ours / t_mm, c_ours / c_mm
    rows.append((f"matmul {n_big}x{n_big}x{args.dim}", t_mm, c_mm, ""))
    rows.append(
        (
            "ours, all metrics, both directions, 1-to-1",
            t_ours,
            c_ours,
            f"wall {ratio:.2f}x / cpu {cpu_ratio:.2f}x matmul",
        )
    )

    # 5 captions per image: texts (5 N_img) x images (N_img).
    images = unit(torch.randn(n_img, args.dim, generator=g))
    texts = noisy_copy(images.repeat_interleave(5, 0), g)
    groups_t, groups_i = torch.arange(n_img).repeat_interleave(5), torch.arange(n_img)
    _, t_mm5, c_mm5 = timed(chunked_matmul, texts, images)
    ours5, t_ours5, c_ours5 = timed(
        retrieval_metrics, texts, images, groups_t, groups_i, chunk_size=args.chunk_size
    )
    note5 = f"wall {t_ours5 / t_mm5:.2f}x / cpu {c_ours5 / c_mm5:.2f}x matmul"
    rows.append((f"matmul {5 * n_img}x{n_img}x{args.dim}", t_mm5, c_mm5, ""))
    rows.append(("ours, 5 captions/image, both directions", t_ours5, c_ours5, note5))

    # (c) torchmetrics at small N (its input is the flattened N^2 matrix).
    a_s, b_s = a[:n_tm].contiguous(), b[:n_tm].contiguous()
    small_ids = torch.arange(n_tm)
    ours_s, t_ours_s, c_ours_s = best_of(
        5, retrieval_metrics, a_s, b_s, small_ids, small_ids, chunk_size=args.chunk_size
    )
    tm_r1, t_tm, c_tm = best_of(2, torchmetrics_recall, a_s, b_s)
    _, t_mm_s, c_mm_s = best_of(5, torch.matmul, a_s, b_s.T)
    assert abs(tm_r1 - ours_s["a_to_b"]["R@1"]) < 1e-6, (tm_r1, ours_s["a_to_b"]["R@1"])
    speedup, ceiling = t_tm / t_ours_s, t_tm / t_mm_s
    tm_name = f"torchmetrics RetrievalRecall@1, N={n_tm} (incl. matmul)"
    rows.append((tm_name, t_tm, c_tm, f"R@1={tm_r1:.4f}"))
    ours_name = f"ours, all metrics both directions, N={n_tm}"
    note = f"{speedup:.1f}x faster (wall), {t_ours_s / t_mm_s:.2f}x matmul"
    rows.append((ours_name, t_ours_s, c_ours_s, note))
    mm_name = f"one matmul {n_tm}x{n_tm}x{args.dim}"
    rows.append((mm_name, t_mm_s, c_mm_s, f"ceiling: {ceiling:.1f}x torchmetrics"))

    print(f"{'case':<58} {'wall s':>8} {'cpu s':>8}  note")
    for name, sec, cpu, note in rows:
        print(f"{name:<58} {sec:8.2f} {cpu:8.2f}  {note}")
    print("1-to-1 a_to_b:", {k: round(v, 4) for k, v in ours["a_to_b"].items()})
    print("5-cap image_to_text:", {k: round(v, 4) for k, v in ours5["b_to_a"].items()})
    result = {
        "time_vs_matmul_50k": round(ratio, 3),
        "cpu_time_vs_matmul_50k": round(cpu_ratio, 3),
        "speedup_vs_torchmetrics": round(speedup, 2),
        "speedup_ceiling_matmul": round(ceiling, 2),
        "time_vs_matmul_5k": round(t_ours_s / t_mm_s, 3),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
