"""`check_foreign_data`: the data doctor on a dataset another tool trains on.

The dataset is converted into the manifest `Row`s the data checks read (`rows.to_rows`),
and the same checks run on it: duplicates (with the host's view of groups), leakage
between splits, input signal (through contrastkit's own loader at `image_size`) and text
truncation (the host's tokenizer at its max length). What differs is the remedy: a host
that treats every row as its own class needs group-aware batching or de-duplication, not
a `group` column, so the findings' fixes are written for the host.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from contrastkit.data.manifest import Row, is_text_column
from contrastkit.data.media import ReadOptions
from contrastkit.doctor.data_checks.content import content_keys
from contrastkit.doctor.data_checks.duplicates import check_duplicates
from contrastkit.doctor.data_checks.foreign.rows import Groups, signal_sample, to_rows
from contrastkit.doctor.data_checks.foreign.sources import Columns, Source, read_source
from contrastkit.doctor.data_checks.host_batches import false_negative_evidence
from contrastkit.doctor.data_checks.leakage import check_leakage
from contrastkit.doctor.data_checks.signal import check_input_signal
from contrastkit.doctor.data_checks.text_cuts import TextCut, hf_cut
from contrastkit.doctor.data_checks.thresholds import SIGNAL_ROWS_PER_SPLIT, SIGNAL_SEED
from contrastkit.doctor.data_checks.truncation import check_truncation
from contrastkit.doctor.findings import Finding
from contrastkit.errors import DataError

# open_clip's default input size (ViT-B-32 and most of its models).
DEFAULT_IMAGE_SIZE = 224
# Split names, as files and `split` columns spell them.
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val",
               "dev": "val", "test": "test"}  # fmt: skip
HOST_REMEDY = (
    "the host treats every row as its own class, so rows sharing an image or a text are "
    "negatives of each other whenever a batch holds both: batch by group (one row per "
    "image per batch: a group-aware sampler, or contrastkit with group = the image), use "
    "sentence-transformers' `batch_sampler=BatchSamplers.NO_DUPLICATES` (it keeps repeated "
    "texts out of one batch), or de-duplicate the rows (see the examples' rows)."
)
SEMANTICS = {
    "row": "Rows are each their own class, as open_clip's CLIP loss and sentence-transformers' "
    "MultipleNegativesRankingLoss see them (--groups row).",
    "media": "Rows of one image are one class (--groups media), but rows of different images "
    "that share a text are not.",
}


@dataclass(frozen=True)
class ForeignOptions:
    """How to read and judge a foreign dataset (the `doctor data FILE` options).

    Attributes:
        columns: the image, text, split (and text-pair) columns and the CSV separator.
        root: folder that relative image paths start from (default: the file's folder).
        groups: "row" (every row its own class, as the host sees it) or "media".
        batch_size: the host's batch size (for the false negatives per batch).
        tokenizer: a local Hugging Face tokenizer folder (default: the packaged MiniLM's).
        max_length: tokens kept per text (default: the tokenizer's model's).
        image_size: the square size images are resized to, as the host's preprocessing.
    """

    columns: Columns = field(default_factory=Columns)
    root: Path | None = None
    groups: Groups = "row"
    batch_size: int = 256
    tokenizer: str | None = None
    max_length: int | None = None
    image_size: int = DEFAULT_IMAGE_SIZE


@dataclass(frozen=True)
class _Splits:
    """The split names `check_leakage` reads from a config's `data` section."""

    train_split: str
    val_split: str | None
    test_split: str | None


@dataclass(frozen=True)
class _LeakageConfig:
    data: _Splits


def split_of(path: Path) -> str:
    """The split a file's name says (`captions_val2017.json` -> val), else train."""
    words = path.stem.lower().replace("-", "_").replace(".", "_").split("_")
    for word in words:
        stem = word.rstrip("0123456789")
        if stem in SPLIT_NAMES:
            return SPLIT_NAMES[stem]
    return "train"


def _read(files: list[Path], opts: ForeignOptions) -> tuple[list[Row], list[Source]]:
    rows: list[Row] = []
    sources: list[Source] = []
    for file in files:
        found = read_source(file, opts.columns, split_of(file) if len(files) > 1 else "train")
        found = [replace(s, split=SPLIT_NAMES.get(s.split, s.split)) for s in found]
        root = opts.root or (file if file.is_dir() else file.parent)
        made = to_rows(file, found, root, opts.groups, opts.columns.pair)
        if len(files) > 1:  # ids stay unique across files
            made = [replace(r, id=f"{file.name}:{r.id}") for r in made]
        rows += made
        sources += found
    if not rows:
        raise DataError(f"{', '.join(map(str, files))}: no rows")
    return rows, sources


def _tokenizer_cuts(opts: ForeignOptions, columns: list[str]) -> list[TextCut]:
    from contrastkit.models.encoders.hf_text import minilm_path

    path = opts.tokenizer or minilm_path("--tokenizer")
    length = opts.max_length or _sentence_length(Path(path))
    cut = hf_cut("text", path, length, "max_length")
    return [replace(cut, column=c) for c in columns]


def _sentence_length(folder: Path) -> int | None:
    """sentence-transformers' `max_seq_length` (what its models cut at), if the folder has it."""
    import json

    config = folder / "sentence_bert_config.json"
    if not config.is_file():
        return None
    return int(json.loads(config.read_text()).get("max_seq_length") or 0) or None


def _host_duplicates(
    found: list[Finding], rows: list[Row], keys: dict[str, Any], batch: int, groups: Groups
) -> list[Finding]:
    """`duplicate_groups` with the false negatives each split's batches hold, and the host's remedy."""
    out = []
    for f in found:
        per_split = {
            split: false_negative_evidence([r for r in rows if r.split == split], keys, batch)
            for split in sorted({r.split for r in rows})
        }
        main = per_split.get("train") or next(iter(per_split.values()))
        evidence = {
            **f.evidence,
            "expected_false_negatives_per_batch": main["expected_false_negatives_per_batch"],
            "batch_size": batch,
            "per_split": per_split,
            "formula": "B(B-1) * sum_c [n_c(n_c-1) - sum_g n_cg(n_cg-1)] / (N(N-1))",
        }
        cause = (
            f"{f.evidence['rows_affected']} rows share an image or a text with another row. "
            f"{SEMANTICS[groups]} So they are negatives of each other whenever one batch holds two of "
            f"them: {evidence['expected_false_negatives_per_batch']} such pairs per batch of "
            f"{batch} on average."
        )
        out.append(replace(f, evidence=evidence, cause=cause, fix_note=HOST_REMEDY))
    return out


def _host_fix(f: Finding) -> Finding:
    """A config key means nothing to another tool: say the change in the host's words."""
    if f.code == "text_truncated" and f.fix:
        n = next(iter(f.fix.values()))
        note = (
            f"keep {n} tokens per text in the host (sentence-transformers: "
            f"`model.max_seq_length = {n}`; open_clip: a model with a longer context_length), "
            f"and rerun with --max-length {n}."
        )
        return replace(f, fix={}, fix_note=note)
    return f


def check_foreign_data(files: list[Path], opts: ForeignOptions) -> list[Finding]:
    """Run the data checks on one or more dataset files of another tool.

    Args:
        files: dataset files (one per split, or one with a split column / several splits).
        opts: how to read and judge them.

    Returns:
        The findings (unsorted), rows named by `<split>:<row number>` ids and lines.

    Raises:
        DataError: unreadable file, missing column, image path that does not exist.
    """
    rows, sources = _read(files, opts)
    cache: dict[Path, str] = {}
    keys = {r.id: content_keys(r, cache) for r in rows}
    findings = _host_duplicates(
        check_duplicates(rows, keys), rows, keys, opts.batch_size, opts.groups
    )
    names = {r.split for r in rows}
    if "train" in names and len(names) > 1:
        splits = _Splits(
            "train", "val" if "val" in names else None, "test" if "test" in names else None
        )
        findings += check_leakage(rows, _LeakageConfig(splits), keys)  # type: ignore[arg-type]
    by_split: dict[str, list[Row]] = {}
    for r in rows:
        by_split.setdefault(r.split, []).append(r)
    read = ReadOptions(image_size=opts.image_size, image_channels=3)
    with tempfile.TemporaryDirectory(prefix="contrastkit-media-") as tmp:
        sample = {
            split: signal_sample(
                split_rows,
                [s for r, s in zip(rows, sources, strict=True) if r.split == split],
                Path(tmp),
                SIGNAL_ROWS_PER_SPLIT,
                SIGNAL_SEED,
            )
            for split, split_rows in by_split.items()
        }
        findings += check_input_signal(sample, read, ", ".join(map(str, files)))
    texts = sorted({c for r in rows for c in r.values if is_text_column(c)})
    if texts:
        findings += check_truncation(by_split, _tokenizer_cuts(opts, texts))
    return [_host_fix(f) for f in findings]
