"""`contrastkit search`: top-k gallery items for a text query, a manifest row, or random
test queries (with whether the true match was found)."""

from __future__ import annotations

import random
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from contrastkit.data import collate
from contrastkit.data.manifest import Row
from contrastkit.errors import ContrastkitError
from contrastkit.eval.faiss_index import build_searcher
from contrastkit.eval.tower_embeddings import embed_tower
from contrastkit.pairing import text_column_of
from contrastkit.protocols import EmbeddingModel, SplitDataset


def _pick_pair(
    model: EmbeddingModel, pairs: list[tuple[str, str]], gallery: str | None, text_query: bool
) -> tuple[str, str]:
    candidates = list(dict.fromkeys([*pairs, *((g, q) for q, g in pairs)]))
    if gallery is not None:
        if gallery not in model.tower_names:
            raise ContrastkitError(f"--gallery {gallery!r}: towers are {list(model.tower_names)}")
        candidates = [p for p in candidates if p[1] == gallery] or [
            (q, gallery) for q in model.tower_names if q != gallery
        ]
    if text_query:
        candidates = [p for p in candidates if text_column_of(model, p[0])]
        if not candidates:
            raise ContrastkitError(
                "a text query needs a tower whose input is text; use --query-id ID instead"
            )
    if not candidates:
        raise ContrastkitError("no (query, gallery) tower pair to search with")
    return candidates[0]


def _describe(row: Row, columns: list[str]) -> str:
    parts = []
    for c in columns:
        value = row.values.get(c)
        text = value if isinstance(value, str) else str(value)
        parts.append(text if len(text) <= 90 else text[:87] + "...")
    return " | ".join(parts)


def _show(
    console: Console,
    title: str,
    scores: torch.Tensor,
    indices: torch.Tensor,
    gallery_rows: list[int],
    dataset: SplitDataset,
    columns: list[str],
    true_group: int | None,
) -> bool:
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id")
    table.add_column(" / ".join(columns))
    if true_group is not None:
        table.add_column("match")
    hit = False
    for rank, (s, j) in enumerate(zip(scores.tolist(), indices.tolist(), strict=True), 1):
        row_index = gallery_rows[j]
        row = dataset.rows[row_index]
        cells = [str(rank), f"{s:.3f}", row.id, _describe(row, columns)]
        if true_group is not None:
            match = int(dataset.group_ids[row_index]) == true_group
            hit = hit or match
            cells.append("yes" if match else "")
        table.add_row(*cells)
    console.print(table)
    return hit


def unknown_tokens(tokenizer: Any, text: str) -> tuple[int, int]:
    """(unknown, all) tokens of `text` under `tokenizer`, BOS/EOS/padding left out; (0, 0)
    when the tokenizer has no unknown token (byte-level BPE reads every text)."""
    unk = getattr(tokenizer, "unk_id", None)
    if unk is None:
        unk = getattr(getattr(tokenizer, "tokenizer", None), "unk_token_id", None)
    if unk is None:
        return 0, 0
    ids, _ = tokenizer.encode([text])
    specials = {tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id}
    body = [int(i) for i in ids[0] if int(i) not in specials]
    return sum(i == unk for i in body), len(body)


def run_search(
    run: Any,
    dataset: SplitDataset,
    *,
    query: str | None,
    query_id: str | None,
    gallery: str | None,
    k: int,
    examples: int,
    seed: int,
    pairs: list[tuple[str, str]],
    console: Console,
    index: str | None = None,
) -> None:
    """Print the top-k gallery items of the dataset for each query (`index`: exact or
    faiss; default the run's `eval.index`)."""
    if query is not None and not query.strip():
        # An empty text embeds to a fixed vector, so it would rank the gallery by nothing.
        raise ContrastkitError("the query text is empty; give some words, or --query-id ID")
    if query is not None:
        unknown, total = unknown_tokens(run.tokenizer, query)
        if total and unknown == total:
            # Every token maps to the one unknown id: the scores rank the gallery by the
            # embedding of "<unk> <unk> ...", which says nothing about the query.
            console.print(
                f"warning: none of the {total} tokens of the query {query[:80]!r} is in the "
                "run's vocabulary (all are <unk>); the scores below do not reflect its meaning",
                style="bold yellow",
                markup=False,
                highlight=False,
            )
    model: EmbeddingModel = run.model
    q_tower, g_tower = _pick_pair(model, pairs, gallery, text_query=query is not None)
    g = embed_tower(model, dataset, g_tower, batch_size=run.config.data.eval_batch_size)
    search = build_searcher(index or run.config.eval.index, g.embeddings)
    g_columns = list(model.tower_inputs(g_tower))
    model.eval()
    if query is not None:
        column = text_column_of(model, q_tower)
        assert column is not None  # _pick_pair kept only towers with a text input
        with torch.no_grad():
            emb = model.encode(q_tower, {column: [query]}).embedding
        scores, idx = search(emb, k)
        _show(
            console, f"{query!r} -> {g_tower}", scores[0], idx[0], g.rows, dataset, g_columns, None
        )
        return
    if query_id is not None:
        by_id = {row.id: i for i, row in enumerate(dataset.rows)}
        if query_id not in by_id:
            raise ContrastkitError(f"--query-id {query_id!r} is not a row of this split")
        chosen = [by_id[query_id]]
    else:
        q = embed_tower(model, dataset, q_tower, batch_size=run.config.data.eval_batch_size)
        chosen = random.Random(seed).sample(q.rows, min(examples, len(q.rows)))
    q_columns = list(model.tower_inputs(q_tower))
    hits = 0
    for i in chosen:
        with torch.no_grad():
            emb = model.encode(q_tower, collate([dataset[i]])).embedding
        scores, idx = search(emb, k)
        row = dataset.rows[i]
        title = f"{row.id} [{q_tower}] {_describe(row, q_columns)} -> {g_tower}"
        hits += _show(
            console, title, scores[0], idx[0], g.rows, dataset, g_columns, int(dataset.group_ids[i])
        )
    console.print(f"true match in the top {k}: {hits} of {len(chosen)} queries")
