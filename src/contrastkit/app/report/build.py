"""`write_report`: the run's report.html, from its files plus (when a checkpoint exists)
the model's retrieval examples and generated captions.

Called by `train` at the end (with the model and data it already holds) and by
`contrastkit report RUN_DIR` at any time; a run still training gets its findings from
the doctor (`doctor_run`, as `contrastkit doctor run` does) and its examples from the
best checkpoint so far.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from contrastkit.app.report.captions import captions_table
from contrastkit.app.report.examples import POOL_SIZE, pick_examples, render_example
from contrastkit.app.report.facts import RunFacts, data_summary, read_facts
from contrastkit.app.report.html import (
    config_section,
    figure,
    findings_section,
    header,
    metrics_table,
    page,
)
from contrastkit.app.report.output import check_out, write_atomic
from contrastkit.app.report.plots import curves_uri, doctor_panels_uri
from contrastkit.app.report.thumbnails import render_inputs
from contrastkit.data import collate, to_device
from contrastkit.errors import ContrastkitError
from contrastkit.eval.tower_embeddings import TowerEmbeddings, embed_tower
from contrastkit.pairing import eval_pairs, text_column_of
from contrastkit.protocols import CaptioningModel, EmbeddingModel, SplitDataset

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
EXAMPLES = 8  # random test queries shown
TOP_K = 5  # results per query
WORST = 4  # worst misses shown
CAPTIONS = 8  # generated captions shown
_R1_KEY = re.compile(r"^(?P<split>[^/]+)/(?P<q>[^/]+)_to_(?P<g>[^/]+)/R@1$")


def pick_pair(facts: RunFacts, towers: list[str], model: EmbeddingModel) -> tuple[str, str] | None:
    """The (query, gallery) pair to show: one the run evaluated (summary, else the
    validation records), a text-query pair first; else the first objective's towers."""
    seen: list[tuple[str, str]] = []
    for key in [*facts.summary, *(k for r in facts.metrics for k in r)]:
        m = _R1_KEY.match(key)
        if m and m["q"] in towers and m["g"] in towers and (m["q"], m["g"]) not in seen:
            seen.append((m["q"], m["g"]))
    if not seen and facts.config.loss.objectives:
        a, b = (list(facts.config.loss.objectives[0].towers) * 2)[:2]
        seen = [(a, b), (b, a)]
    text_first = sorted(seen, key=lambda p: text_column_of(model, p[0]) is None)
    return text_first[0] if text_first else None


def examples_html(
    dataset: SplitDataset,
    q: TowerEmbeddings,
    g: TowerEmbeddings,
    q_columns: list[str],
    g_columns: list[str],
    *,
    same_tower: bool,
    n: int = EXAMPLES,
    k: int = TOP_K,
    worst: int = WORST,
    seed: int = 0,
) -> tuple[str, str]:
    """(random examples, worst misses) as HTML, from precomputed embeddings."""
    shown, misses = pick_examples(
        q.embeddings, g.embeddings, q.groups, g.groups, n=n, k=k, worst=worst, seed=seed,
        same_tower=same_tower,
    )  # fmt: skip
    hits = sum(e.hit for e in shown)

    def draw(examples: list) -> str:
        return "".join(
            render_example(e, dataset, q.rows, g.rows, q_columns, g_columns) for e in examples
        )

    intro = (
        f"<p>{len(shown)} random queries (seed {seed}) from {len(q.rows)} unique queries against "
        f"{len(g.rows)} unique gallery items; <b>{hits} hit{'' if hits == 1 else 's'}</b>, "
        f"{len(shown) - hits} miss{'' if len(shown) - hits == 1 else 'es'} "
        "(a hit: the top result is a true match, as R@1 counts it).</p>"
    )
    worst_intro = (
        f"<p>The {len(misses)} queries whose first true match ranks lowest, among "
        f"{min(len(q.rows), POOL_SIZE)} seeded queries.</p>"
    )
    return intro + draw(shown), (worst_intro + draw(misses)) if misses else "<p>no misses</p>"


def _split_of(cfg: Any, bundle: Any, wanted: str | None) -> str | None:
    names = [wanted] if wanted else ["test", cfg.data.val_split, cfg.data.train_split]
    return next((s for s in names if s in bundle.splits and len(bundle.splits[s])), None)


def _check_split(bundle: Any, split: str) -> None:
    """An asked-for split must hold rows (like `eval --split`).

    Raises:
        ContrastkitError: it does not; the message lists the splits and their sizes.
    """
    if split in bundle.splits and len(bundle.splits[split]):
        return
    sizes = ", ".join(f"{k} ({len(v)} rows)" for k, v in bundle.splits.items())
    raise ContrastkitError(f"--split {split}: the run's data has no rows in it; splits: {sizes}")


def _captions(model: CaptioningModel, dataset: SplitDataset, cfg: Any, seed: int) -> str:
    column = model.text_column
    rows = sorted(random.Random(seed).sample(range(len(dataset)), min(CAPTIONS, len(dataset))))
    gen = cfg.eval.captioning
    device = next(model.parameters()).device
    with torch.no_grad():
        hyps = model.generate(
            to_device(collate([dataset[i] for i in rows]), device),
            method=gen.method, beam_size=gen.beam_size, max_length=gen.max_length,
            temperature=gen.temperature, top_k=gen.top_k, top_p=gen.top_p,
        )  # fmt: skip
    refs = [str(dataset.rows[i].values.get(column, "")) for i in rows]
    media = [c for c in ("image", "video", "sequence") if c in dataset.columns]
    inputs = [render_inputs(dataset.rows[i], media) for i in rows]
    return captions_table(list(hyps), refs, inputs)


def _model_sections(
    facts: RunFacts,
    model: EmbeddingModel | None,
    bundle: Any,
    split: str | None,
    seed: int,
    embeddings: Mapping[str, TowerEmbeddings],
) -> list:
    if model is None or bundle is None:
        return []
    split = _split_of(facts.config, bundle, split)
    if split is None:
        return [("Retrieval examples", "<p class=dim>no non-empty split to show</p>")]
    dataset: SplitDataset = bundle.splits[split]
    towers = list(model.tower_names)
    out = []
    pair = pick_pair(facts, towers, model)
    if pair is not None:
        qt, gt = pair
        batch = facts.config.data.eval_batch_size
        done = dict(embeddings)
        for tower in dict.fromkeys((qt, gt)):  # each tower embedded once, unless given
            if tower not in done:
                done[tower] = embed_tower(model, dataset, tower, batch_size=batch)
        q, g = done[qt], done[gt]
        shown, worst = examples_html(
            dataset, q, g, list(model.tower_inputs(qt)), list(model.tower_inputs(gt)),
            same_tower=qt == gt, seed=seed,
        )  # fmt: skip
        title = f"Retrieval examples: {split}, {qt} → {gt}"
        out += [(title, shown), ("Worst misses", worst)]
    if getattr(model, "has_captioning", False):
        captioner = cast(CaptioningModel, model)  # has_captioning: it has `generate`
        out.append(
            (f"Generated captions ({split})", _captions(captioner, dataset, facts.config, seed))
        )
    return out


def _load(run_dir: Path, checkpoint: str | None) -> tuple[EmbeddingModel | None, Any, str]:
    """The run's model and data; without an asked-for `checkpoint` a run with none yet
    (still training) gets a page without examples, an asked-for one must load."""
    from contrastkit.train.checkpoint import load_run

    try:
        run = load_run(run_dir, checkpoint or "best")
    except ContrastkitError as err:
        if checkpoint is not None:
            raise
        return None, None, f"no retrieval examples: {err}"
    return run.model, run.bundle, ""


def write_report(
    run_dir: str | Path,
    *,
    model: EmbeddingModel | None = None,
    bundle: Any = None,
    out: str | Path | None = None,
    split: str | None = None,
    seed: int = 0,
    checkpoint: str | None = None,
    embeddings: Mapping[str, TowerEmbeddings] | None = None,
) -> Path:
    """Write `report.html` for a run directory (finished or still training).

    Args:
        model, bundle: the trained model and data bundle when the caller holds them (train
            does); otherwise the `checkpoint` is loaded and the data built from config.yaml.
        out: output path (default RUN_DIR/report.html).
        split: split the examples come from (default test, else val, else train); names
            are case-insensitive.
        checkpoint: best | last | a path; without one, the best (a run without any
            checkpoint gets a page without examples).
        embeddings: tower -> embeddings of that split already computed by the caller.

    Raises:
        RunDirError: RUN_DIR has no config.yaml, or its files are damaged.
        ContrastkitError: `out` cannot take the page, `split` has no rows, or an asked-for
            `checkpoint` does not load.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    if out is not None:
        check_out(out)  # before the work
    split = split.lower() if split else None  # split names are case-insensitive everywhere
    findings = None
    if not (run_dir / "summary.json").is_file() and (run_dir / "config.yaml").is_file():
        from contrastkit.doctor.run import diagnose_run

        findings = diagnose_run(run_dir)  # not finished: diagnose its signals so far
    facts = read_facts(run_dir, findings)
    note = ""
    if model is None:
        model, bundle, note = _load(run_dir, checkpoint)
    if split and bundle is not None:
        _check_split(bundle, split)
    if bundle is not None and not facts.data_rows:
        facts.data_rows = data_summary(bundle)
    metrics = dict(facts.summary)
    for rec in facts.metrics:  # rows measured before training, e.g. eval.at_start
        metrics.update({k: v for k, v in rec.items() if "start" in k.split("/")[0]})
    val = facts.config.data.val_split or "val"
    sections = [
        (
            "Headline metrics",
            metrics_table(metrics, [f"{q}_to_{g}" for q, g in eval_pairs(facts.config)]),
        ),
        ("Curves", figure(curves_uri(facts.metrics, val), "validation metrics and training loss")),
        ("Findings", findings_section(facts.findings)),
        ("Doctor panels", figure(doctor_panels_uri(facts.signals, run_dir), "doctor panels")),
        *_model_sections(facts, model, bundle, split, seed, embeddings or {}),
    ]
    if note:
        sections.append(("Retrieval examples", f"<p class=dim>{note.strip()}</p>"))
    sections.append(("Config", config_section(facts.config_text)))
    text = page(f"{facts.name} report", sections, head=header(facts))
    path = write_atomic(out if out is not None else run_dir / REPORT_FILE, text)  # never half
    log.info("wrote %s (%.0f KB, %.1f s)", path, len(text) / 1024, time.perf_counter() - started)
    return path
