"""Benchmark: exact retrieval metrics and FAISS search over a 1M x 256 gallery on disk.

Writes a gallery of N = 1,000,000 L2-normalised 256-d float32 embeddings (1.0 GB, .npy)
and Q queries: query i's positives are 1-3 gallery rows at random positions (an anchor
plus isotropic noise, cosine ~0.28 to the query), the rest of the gallery are distractors
of their own groups drawn around 1000 cluster centres, so ranks are neither trivial nor
random. Then, each in a fresh subprocess (so peak memory is its own):

(a) `gallery_retrieval_metrics`: exact query -> gallery metrics with the gallery streamed
    from the .npy by positioned reads; wall time and peak resident memory (ru_maxrss),
    against the 1.0 GB the gallery alone would take in memory;
(b) `eval.index: faiss` (IVF-Flat, default cells and probes) built over the memory-mapped
    gallery: build time, search time per query (top 10), and recall@10 against the exact
    top 10 of the first 500 queries.

    python bench/retrieval_1m.py                     # N = 1M, Q = 1000
    python bench/retrieval_1m.py --n 100000 --queries 1000
    python bench/retrieval_1m.py --quick             # N = 20,000, Q = 100: a smoke run

Without faiss installed, (b) is skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DIM, BLOCK = 256, 65536
# Per-dimension noise around a unit anchor: query and positive meet at cosine
# 1 / (1 + 256 * 0.1**2) ~ 0.28, while the best of 1M random distractors reaches ~0.3.
NOISE = 0.1


def make_data(folder: Path, n: int, q: int, seed: int = 0) -> None:
    """gallery.npy (N x D), gallery_groups.npy, queries.npy, query_groups.npy."""
    if (folder / "done").exists():
        return
    rng = np.random.default_rng(seed)
    anchors = rng.standard_normal((q, DIM)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
    per_query = rng.integers(1, 4, q)
    positive_groups = np.repeat(np.arange(q), per_query)
    groups = np.arange(q, q + n)  # distractors: a group each
    slots = rng.choice(n, size=len(positive_groups), replace=False)
    groups[slots] = positive_groups
    centres = rng.standard_normal((1000, DIM)).astype(np.float32)
    out = np.lib.format.open_memmap(folder / "gallery.npy", "w+", np.float32, (n, DIM))
    for start in range(0, n, BLOCK):
        g = groups[start : start + BLOCK]
        block = centres[rng.integers(0, 1000, len(g))] + rng.standard_normal((len(g), DIM))
        pos = g < q
        block[pos] = anchors[g[pos]] + NOISE * rng.standard_normal((int(pos.sum()), DIM))
        out[start : start + BLOCK] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()
    del out
    queries = anchors + NOISE * rng.standard_normal((q, DIM)).astype(np.float32)
    np.save(folder / "queries.npy", queries / np.linalg.norm(queries, axis=1, keepdims=True))
    np.save(folder / "gallery_groups.npy", groups)
    np.save(folder / "query_groups.npy", np.arange(q))
    (folder / "done").write_text("")


def peak_rss_gb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from
    the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def run_metrics(folder: Path) -> dict:
    from contrastkit.eval.retrieval.gallery import gallery_retrieval_metrics

    queries = torch.from_numpy(np.load(folder / "queries.npy"))
    gq, gg = np.load(folder / "query_groups.npy"), np.load(folder / "gallery_groups.npy")
    before = peak_rss_gb()  # the interpreter, torch and the inputs
    start = time.perf_counter()
    metrics = gallery_retrieval_metrics(queries, folder / "gallery.npy", gq, gg)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_gb": peak_rss_gb(), "rss_before_gb": before, **metrics}


def run_faiss(folder: Path) -> dict:
    from contrastkit.eval.faiss_index import build_searcher
    from contrastkit.eval.search import topk_search

    gallery = np.load(folder / "gallery.npy", mmap_mode="r")
    queries = torch.from_numpy(np.load(folder / "queries.npy"))
    start = time.perf_counter()
    search = build_searcher("faiss", gallery)
    built = time.perf_counter() - start
    start = time.perf_counter()
    _, got = search(queries, 10)
    per_query_ms = (time.perf_counter() - start) / len(queries) * 1e3
    subset = queries[:500]
    exact_hits = 0
    g = torch.from_numpy(np.ascontiguousarray(gallery))
    _, want = topk_search(subset, g, 10)
    for a, b in zip(got[:500], want, strict=True):
        exact_hits += len(set(a.tolist()) & set(b.tolist()))
    return {
        "build_seconds": built,
        "search_ms_per_query": per_query_ms,
        "recall_at_10": exact_hits / want.numel(),
        "nlist": search.__self__.nlist if hasattr(search.__self__, "nlist") else None,
        "nprobe": search.__self__.index.nprobe if hasattr(search.__self__, "nlist") else None,
    }


def child(kind: str, folder: Path) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import retrieval_1m as b; from pathlib import Path; "
        f"print(json.dumps(b.run_{kind}(Path({str(folder)!r}))))"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--quick", action="store_true", help="N = 20,000, Q = 100 (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries = 20_000, 100
    if not args.skip_faiss and importlib.util.find_spec("faiss") is None:
        print("faiss skipped: faiss is not installed", flush=True)
        args.skip_faiss = True
    folder = Path(tempfile.gettempdir()) / f"contrastkit-bench-1m-{args.n}-{args.queries}"
    folder.mkdir(exist_ok=True)
    start = time.perf_counter()
    make_data(folder, args.n, args.queries)
    print(f"data in {folder} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"load average: {os.getloadavg()}", flush=True)
    metrics = child("metrics", folder)
    print(
        f"exact metrics, Q={args.queries} x N={args.n} x {DIM}: {metrics['seconds']:.1f} s, "
        f"peak RSS {metrics['peak_rss_gb']:.2f} GB, R@1 {metrics['R@1']:.4f}",
        flush=True,
    )
    faiss = None if args.skip_faiss else child("faiss", folder)
    if faiss:
        print(f"faiss IVF: {faiss}", flush=True)
    result = {
        "n_gallery": args.n,
        "dim": DIM,
        "n_queries": args.queries,
        "gallery_gb": args.n * DIM * 4 / 1e9,
        "metrics_seconds": round(metrics["seconds"], 1),
        "metrics_peak_rss_gb": round(metrics["peak_rss_gb"], 2),
        "rss_before_metrics_gb": round(metrics["rss_before_gb"], 2),
        "R@1": metrics["R@1"],
        "mAP": metrics["mAP"],
        "faiss": faiss,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
