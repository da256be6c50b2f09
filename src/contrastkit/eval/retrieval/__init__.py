"""Retrieval metrics: every query's positives ranked against a gallery, in chunks, exactly.

Public names: `retrieval_metrics` (a->b and b->a from two embedding matrices),
`retrieval_metrics_from_scores` (a given score matrix), `label_recall_at_1`,
`self_retrieval_metrics` (one set against itself, leave-one-out) and
`gallery_retrieval_metrics` (a gallery streamed from an .npy on disk).

In the order things happen: `match_groups.py` sorts queries and gallery by match group
and cuts group-aligned chunks; `threshold_counts.py` counts, tile by tile, the gallery
items scored at or above each positive; `ranking.py` turns those counts into the
positives' 1-based ranks (pessimistic ties) in one pass; `rank_metrics.py` summarises the
ranks (R@k, median / mean rank, NDCG, mAP, mAP@R). `metrics.py`, `leave_one_out.py` and
`gallery.py` are the three entry points built on that pass. See docs/evaluation.md.
"""

from contrastkit.eval.retrieval.gallery import gallery_retrieval_metrics
from contrastkit.eval.retrieval.leave_one_out import self_retrieval_metrics
from contrastkit.eval.retrieval.metrics import (
    label_recall_at_1,
    retrieval_metrics,
    retrieval_metrics_from_scores,
)

__all__ = [
    "gallery_retrieval_metrics",
    "label_recall_at_1",
    "retrieval_metrics",
    "retrieval_metrics_from_scores",
    "self_retrieval_metrics",
]
