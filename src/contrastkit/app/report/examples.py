"""Retrieval examples for the report: N seeded random test queries with their top-k, and
the worst misses.

Embeddings are computed once per tower (by the caller) and reused here. Ranks are
measured only for a seeded pool of `POOL_SIZE` queries, in chunks of `CHUNK` queries
against the whole gallery, so a 100k-row split costs ~POOL_SIZE x N x D multiply-adds
(0.4 s at N = 100k, D = 64 on 2 cores) instead of a full evaluation; the worst misses
are the pool's queries whose first true match ranks lowest. The tie policy is
eval/retrieval/metrics.py's: pessimistic, a negative scored equal to the best positive ranks
ahead of it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastkit.protocols import SplitDataset

POOL_SIZE = 1024  # queries ranked to find the worst misses; bounds report time at any N
CHUNK = 128  # queries per score block: 128 x 100k float32 = 51 MB


@dataclass
class Example:
    """One query and its top-k.

    Attributes:
        query: index into the query tower's unique inputs.
        rank: 1-based rank of the first true match in the whole gallery.
        top: gallery indices of the top-k, best first; scores: their cosine scores.
        match: for each of `top`, whether it is a true match (same group).
    """

    query: int
    rank: int
    top: list[int]
    scores: list[float]
    match: list[bool]

    @property
    def hit(self) -> bool:
        """A hit when the best-scored gallery item is a true match (R@1's definition)."""
        return self.rank == 1


def _block(
    q: Tensor, g: Tensor, q_groups: Tensor, g_groups: Tensor, q_index: Tensor, same: bool, k: int
) -> tuple[Tensor, Tensor, Tensor]:
    scores = q @ g.T
    if same:  # a query never retrieves itself
        scores[torch.arange(len(q)), q_index] = float("-inf")
    positive = q_groups[:, None] == g_groups[None, :]
    if same:
        positive[torch.arange(len(q)), q_index] = False
    best_pos = scores.masked_fill(~positive, float("-inf")).max(dim=1).values
    ahead = ((scores >= best_pos[:, None]) & ~positive).sum(dim=1)
    rank = torch.where(torch.isfinite(best_pos), ahead + 1, torch.full_like(ahead, len(g) + 1))
    top_s, top_i = scores.topk(min(k, g.shape[0]), dim=1)
    return rank, top_s, top_i


def pick_examples(
    query: Tensor,
    gallery: Tensor,
    query_groups: Tensor,
    gallery_groups: Tensor,
    *,
    n: int,
    k: int,
    worst: int,
    seed: int,
    same_tower: bool = False,
) -> tuple[list[Example], list[Example]]:
    """(N random examples, the `worst` lowest-ranked misses of the pool), each with its top-k.

    Args:
        query, gallery: Q x D and G x D L2-normalised embeddings.
        query_groups, gallery_groups: group id of each; same group = true match.
        same_tower: query and gallery are one tower (leave-one-out: the query is excluded).

    Queries without any true match in the gallery are left out.
    """
    order = np.random.default_rng(seed).permutation(len(query))[:POOL_SIZE]
    pool = torch.as_tensor(order, dtype=torch.long)
    q_groups, g_groups = query_groups.long(), gallery_groups.long()
    found: list[Example] = []
    for start in range(0, len(pool), CHUNK):
        idx = pool[start : start + CHUNK]
        rank, top_s, top_i = _block(
            query[idx].float(), gallery.float(), q_groups[idx], g_groups, idx, same_tower, k
        )
        for j, qi in enumerate(idx.tolist()):
            if int(rank[j]) > len(gallery):
                continue  # no true match in this gallery
            top = top_i[j].tolist()
            found.append(
                Example(
                    query=qi,
                    rank=int(rank[j]),
                    top=top,
                    scores=[float(s) for s in top_s[j]],
                    match=[bool(g_groups[t] == q_groups[qi]) for t in top],
                )
            )
    shown = found[:n]
    misses = sorted((e for e in found if not e.hit), key=lambda e: (-e.rank, e.query))
    return shown, misses[:worst]


def render_example(
    ex: Example,
    dataset: SplitDataset,
    query_rows: list[int],
    gallery_rows: list[int],
    query_columns: list[str],
    gallery_columns: list[str],
) -> str:
    """One example as HTML: the query, then its top-k with true matches outlined."""
    from contrastkit.app.report.thumbnails import render_inputs

    q_row = dataset.rows[query_rows[ex.query]]
    verdict = "hit" if ex.hit else "miss"
    where = "true match ranked 1st" if ex.hit else f"first true match at rank {ex.rank}"
    cells = [
        f"<div class='cell q'><b>query</b> {html.escape(q_row.id)}"
        f"{render_inputs(q_row, query_columns)}</div>"
    ]
    for rank, (g, score, match) in enumerate(zip(ex.top, ex.scores, ex.match, strict=True), 1):
        row = dataset.rows[gallery_rows[g]]
        mark = " ✓ true match" if match else ""
        cells.append(
            f"<div class='cell{' match' if match else ''}'><b>#{rank}</b> {score:.3f}{mark}"
            f"<br><span class=dim>{html.escape(row.id)}</span>"
            f"{render_inputs(row, gallery_columns)}</div>"
        )
    return (
        f"<div class='ex {verdict}'><span class='tag {verdict}'>{verdict}</span> "
        f"<span class=dim>{where}</span><div class=row>{''.join(cells)}</div></div>"
    )
