"""contrastkit.eval: retrieval metrics, embedding statistics, captioning metrics, probes,
exact search and embedding export. See docs/evaluation.md."""

from contrastkit.eval.captioning import captioning_metrics, numeric_error, numeric_fidelity
from contrastkit.eval.evaluate import evaluate
from contrastkit.eval.export import export_embeddings, load_embeddings
from contrastkit.eval.probes import knn_accuracy, linear_probe_accuracy, zero_shot_accuracy
from contrastkit.eval.retrieval import label_recall_at_1, retrieval_metrics
from contrastkit.eval.search import topk_search
from contrastkit.eval.stats import effective_rank, embedding_stats
from contrastkit.eval.tower_embeddings import embed_dataset, embed_tower

__all__ = [
    "captioning_metrics",
    "effective_rank",
    "embed_dataset",
    "embed_tower",
    "embedding_stats",
    "evaluate",
    "export_embeddings",
    "knn_accuracy",
    "label_recall_at_1",
    "linear_probe_accuracy",
    "load_embeddings",
    "numeric_error",
    "numeric_fidelity",
    "retrieval_metrics",
    "topk_search",
    "zero_shot_accuracy",
]
