"""Time and size of report.html for a 100k-row test split (budget: < 10 s, < 5 MB).

The split is 100,000 caption rows over 20,000 images (5 captions per image, grouped by
image, the images being the digits-captions PNGs reused), so the text -> image examples
rank each query against 20,000 unique images. Embeddings are precomputed (random, 64-d,
L2-normalised): embedding is the model's cost, not the report's, and `write_report`
takes the embeddings a caller already holds. The run's files (metrics of 30 epochs,
2,000 steps of doctor signals with the doctor's training_curves.png drawn from them, as
at the end of a run; three findings) are synthetic. Dataset rows are built directly,
without the per-row validation of `build_datasets`.

    python bench/report.py            # RESULT {"rows", "seconds", "cpu_seconds", "megabytes", ...}
    python bench/report.py --quick    # 1,000 rows, once: a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

from contrastkit.app.report import write_report
from contrastkit.config import dump_config, load_config
from contrastkit.data.builtin import builtin_manifest
from contrastkit.data.dataset import ManifestDataset
from contrastkit.data.loaders import DatasetBundle
from contrastkit.data.manifest import Row
from contrastkit.data.media import ReadOptions
from contrastkit.doctor.findings import Finding, write_findings
from contrastkit.doctor.report import plot_curves
from contrastkit.eval.tower_embeddings import TowerEmbeddings

ROWS = 100_000
CAPTIONS_PER_IMAGE = 5
DIM = 64
REPEATS = 3  # best of 3: the reference machine is shared; the minimum is the report's cost
EXAMPLES = Path(__file__).resolve().parents[1] / "src/contrastkit/examples/digits.yaml"


class PrecomputedModel:
    """What the report asks of a model when the embeddings are given: its towers' inputs."""

    tower_names = ("image", "text")
    has_captioning = False

    def tower_inputs(self, tower: str) -> list[str]:
        return [tower]


def big_split(cfg, n_rows: int = ROWS) -> ManifestDataset:
    src = builtin_manifest("digits-captions")
    images = [src.parent / json.loads(line)["image"] for line in src.read_text().splitlines()[::5]]
    rows = []
    for i in range(n_rows):
        g = i // CAPTIONS_PER_IMAGE
        image = images[g % len(images)]
        values = {"image": str(image), "text": f"caption {i} of image {g}: a handwritten digit"}
        rows.append(Row(f"r{i}", f"g{g}", "test", values, i + 1, {"image": image}))
    groups = {r.group: i for i, r in enumerate(rows[::CAPTIONS_PER_IMAGE])}
    return ManifestDataset(rows, ReadOptions.from_config(cfg.data), groups, {}, "bench.jsonl")


def embeddings(dataset: ManifestDataset, tower: str) -> TowerEmbeddings:
    step = CAPTIONS_PER_IMAGE if tower == "image" else 1  # one image per group
    rows = list(range(0, len(dataset), step))
    gen = torch.Generator().manual_seed(0 if tower == "image" else 1)
    emb = torch.nn.functional.normalize(torch.randn(len(rows), DIM, generator=gen), dim=1)
    groups = torch.as_tensor(dataset.group_ids[rows])
    return TowerEmbeddings(
        ids=[dataset.rows[i].id for i in rows],
        embeddings=emb,
        rows=rows,
        row_to_unique=torch.arange(len(dataset)) // step,
        groups=groups,
        labels=torch.full((len(rows),), -1),
    )


def run_files(run: Path, cfg) -> None:
    run.mkdir()
    (run / "config.yaml").write_text(dump_config(cfg))
    records = []
    for step in range(0, 2000, 20):
        records.append({"step": step, "epoch": step // 67, "train/loss": 5 * math.exp(-step / 700)})
    for epoch in range(1, 31):
        records.append({"step": 67 * epoch, "epoch": float(epoch),
                        "val/text_to_image/R@1": 0.3 * (1 - math.exp(-epoch / 8)),
                        "val/image_to_text/R@1": 0.32 * (1 - math.exp(-epoch / 8))})  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    signals = [
        {"step": s, "monitor": "m", "grad_norm/towers.image": 1 + s / 1000,
         "grad_norm/towers.text": 2 - s / 2000, "align/pos_sim": 0.6 * s / 2000,
         "align/neg_sim": 0.1, "loss/contrastive": 5 * math.exp(-s / 700),
         "contrastive/logit_scale": 14.3 + s / 500, "embed_drift/image/drift": s / 4000,
         "grad_ratio/backbone_head": 0.5}
        for s in range(0, 2000, 10)
    ]  # fmt: skip
    (run / "signals.jsonl").write_text("".join(json.dumps(s) + "\n" for s in signals))
    plot_curves(signals, run / "training_curves.png")  # the doctor's, at the end of training
    summary = {
        "test/text_to_image/R@1": 0.29,
        "test/image_to_text/R@1": 0.31,
        "train/seconds": 900.0,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "run.json").write_text(json.dumps({"status": "finished", "rows_skipped": 0}))
    write_findings(
        [Finding("rows_skipped", "warning", {"rows_skipped": 3}, "rows skipped", {"data.on_error": "raise"}),
         Finding("temperature_out_of_range", "error", {"temperature": 10.0}, "tau 10",
                 {"loss.objectives.0.temperature": 0.07}),
         Finding("gap_shrinking", "info", {"gap": 0.1}, "gap shrinks")],
        run / "findings.json",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="caption rows of the split")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="best of this many")
    parser.add_argument("--quick", action="store_true", help="1,000 rows, once (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 1000, 1
    cfg = load_config(EXAMPLES)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run_files(run, cfg)
        dataset = big_split(cfg, args.rows)
        bundle = DatasetBundle(splits={"test": dataset}, label_names=[], group_names=[])
        given = {t: embeddings(dataset, t) for t in ("image", "text")}
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            path = write_report(run, model=PrecomputedModel(), bundle=bundle, embeddings=given)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)  # all threads of this process
        seconds = min(times)
        size = path.stat().st_size / 1e6
        page = path.read_text()
        result = {
            "rows": args.rows,
            "unique_queries": len(given["text"].rows),
            "gallery": len(given["image"].rows),
            "seconds": round(seconds, 2),
            "cpu_seconds": round(min(cpu), 2),
            "megabytes": round(size, 2),
            "images": page.count("data:image/png"),
            "examples": page.count("class='tag "),
        }
        print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
