"""`check_data`: hash each row's content once, then run every data check on it; then
measure the input signal and the text truncation on a seeded sample of every split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from contrastkit.config import Config
from contrastkit.data.manifest import is_text_column
from contrastkit.data.media import ReadOptions
from contrastkit.doctor.data_checks.content import content_keys
from contrastkit.doctor.data_checks.duplicates import check_duplicates, check_near_duplicates
from contrastkit.doctor.data_checks.groups import (
    check_group_formats,
    check_groups,
    check_retrieval_groups,
)
from contrastkit.doctor.data_checks.host_batches import false_negative_evidence
from contrastkit.doctor.data_checks.leakage import check_leakage
from contrastkit.doctor.data_checks.missing import check_labels, check_skipped
from contrastkit.doctor.data_checks.signal import check_input_signal
from contrastkit.doctor.data_checks.text_cuts import TextCut, text_cuts
from contrastkit.doctor.data_checks.truncation import check_truncation
from contrastkit.doctor.findings import Finding


def _all_rows(bundle: Any) -> list[Any]:
    seen: set[str] = set()
    rows = []
    for dataset in bundle.splits.values():
        for r in dataset.rows:
            if r.id not in seen:
                seen.add(r.id)
                rows.append(r)
    return rows


def _per_batch(f: Finding, rows: list[Any], keys: dict[str, Any], cfg: Config) -> Finding:
    """`duplicate_groups` with the false negatives random training batches hold
    (`host_batches`); the groups sampler draws whole groups, so it gets no estimate."""
    if cfg.data.sampler.type != "random":
        return f
    train = [r for r in rows if r.split == cfg.data.train_split]
    if not train:
        return f
    found = false_negative_evidence(train, keys, cfg.data.batch_size)
    return replace(f, evidence={**f.evidence, "train_batches": found})


def check_data(
    bundle: Any,
    cfg: Config,
    *,
    embed_texts: Callable[[list[str]], Tensor] | None = None,
    cuts: list[TextCut] | None = None,
) -> list[Finding]:
    """Run every data check on a `DatasetBundle`.

    Args:
        bundle: the datasets (`.splits[name].rows`, `.skipped`).
        cfg: the run config (batch size, sampler, objectives, heads, doctor thresholds,
            read options, tokenizer).
        embed_texts: optional text embedder for near-duplicate search (B texts -> B x D).
        cuts: the text columns' tokenizers and lengths (default: `text_cuts(cfg, ...)`,
            the tokenizers `train` builds).

    Returns:
        Findings, unsorted (see `sort_findings`).
    """
    rows = _all_rows(bundle)
    cache: dict[Path, str] = {}  # each file is hashed once
    keys = {r.id: content_keys(r, cache) for r in rows}
    findings = [_per_batch(f, rows, keys, cfg) for f in check_duplicates(rows, keys)]
    findings += check_group_formats(rows)
    findings += check_leakage(rows, cfg, keys)
    findings += check_groups(rows, cfg)
    findings += check_retrieval_groups(rows, cfg)
    findings += check_labels(rows, cfg)
    findings += check_skipped(bundle, rows)
    splits = {name: list(d.rows) for name, d in bundle.splits.items()}
    manifest = str(getattr(bundle, "manifest_path", "") or cfg.data.manifest)
    findings += check_input_signal(splits, ReadOptions.from_config(cfg.data), manifest)
    if cuts is None:
        train_rows = splits.get(cfg.data.train_split, [])
        texts = [str(v) for r in train_rows for c, v in r.values.items() if is_text_column(c)]
        cuts = text_cuts(cfg, texts)
    findings += check_truncation(splits, cuts)
    if embed_texts is not None:
        train = [r for r in rows if r.split == cfg.data.train_split]
        findings += check_near_duplicates(train, cfg.doctor.near_duplicate_cosine, embed_texts)
    return findings
