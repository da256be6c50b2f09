"""Probes that read class information out of frozen embeddings.

Zero-shot (CLIP, Radford et al. 2021): classify an image by its nearest class prompt.
k-NN: majority vote of the k nearest labelled embeddings (cosine). Linear probe: a
logistic-regression head trained on frozen train embeddings, scored on test embeddings.
All are deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from contrastkit.errors import DataError


def _normalise(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x.detach().float(), dim=-1)


def zero_shot_accuracy(image_emb: Tensor, labels: Tensor, prompt_emb_per_class: Tensor) -> float:
    """Share of rows whose most similar class prompt is their label.

    Shape:
        image_emb: N x D; labels: N (class index, -1 = missing and left out);
        prompt_emb_per_class: C x D (one prompt per class, or the mean of several).
    """
    keep = labels >= 0
    if not bool(keep.any()):
        raise DataError("zero-shot: no row has a label")
    pred = (_normalise(image_emb[keep]) @ _normalise(prompt_emb_per_class).T).argmax(1)
    return (pred.cpu() == labels[keep].cpu()).float().mean().item()


def knn_predict(
    query: Tensor,
    gallery: Tensor,
    gallery_labels: Tensor,
    k: int,
    *,
    leave_one_out: bool = False,
    chunk_size: int = 4096,
) -> Tensor:
    """Majority vote of the k most similar gallery rows (cosine).

    Ties in the vote go to the class whose members are, summed, most similar; remaining
    ties to the smallest class index. With `leave_one_out`, query i is gallery row i and
    is excluded from its own neighbours.
    """
    q, g = _normalise(query), _normalise(gallery)
    labels = gallery_labels.to(g.device).long()
    num_classes = int(labels.max()) + 1
    k = min(k, len(g) - int(leave_one_out))
    if k < 1:
        raise DataError("k-NN: the gallery needs at least one row besides the query")
    preds = []
    for r0 in range(0, len(q), chunk_size):
        sims = q[r0 : r0 + chunk_size] @ g.T
        if leave_one_out:
            rows = torch.arange(r0, r0 + len(sims), device=sims.device)
            sims[torch.arange(len(sims)), rows] = -float("inf")
        top_sims, top = sims.topk(k, dim=1)
        votes = torch.zeros(len(sims), num_classes, device=sims.device)
        votes.scatter_add_(1, labels[top], torch.ones_like(top_sims))
        weight = torch.zeros_like(votes).scatter_add_(1, labels[top], top_sims)
        # Lexicographic (votes, summed similarity): similarities lie in [-k, k] < 2k+1.
        score = votes * (2 * k + 1) + weight
        preds.append(score.argmax(1).cpu())
    return torch.cat(preds)


def knn_accuracy(
    query: Tensor,
    query_labels: Tensor,
    gallery: Tensor | None = None,
    gallery_labels: Tensor | None = None,
    *,
    k: int = 10,
    chunk_size: int = 4096,
) -> float:
    """k-NN accuracy; without a gallery, leave-one-out on `query` itself."""
    loo = gallery is None
    if gallery is None:
        g, gl = query, query_labels
    elif gallery_labels is None:
        raise ValueError("knn_accuracy: a gallery needs gallery_labels")
    else:
        g, gl = gallery, gallery_labels
    keep_g = gl >= 0
    if loo:
        if not bool(keep_g.all()):
            query, query_labels = query[keep_g], query_labels[keep_g]
            g, gl = query, query_labels
    else:
        g, gl = g[keep_g], gl[keep_g]
    keep_q = query_labels >= 0
    pred = knn_predict(query[keep_q], g, gl, k, leave_one_out=loo, chunk_size=chunk_size)
    return (pred == query_labels[keep_q].cpu()).float().mean().item()


def linear_probe_accuracy(
    train_emb: Tensor,
    train_labels: Tensor,
    test_emb: Tensor,
    test_labels: Tensor,
    *,
    weight_decay: float = 1e-3,
    max_iter: int = 50,
) -> float:
    """Logistic regression fit with full-batch L-BFGS on train, accuracy on test.

    Deterministic: zero initialisation, full batch, at most `max_iter` iterations. The L2
    penalty keeps the problem strictly convex, so separable data still converge quickly.
    """
    keep_tr, keep_te = train_labels >= 0, test_labels >= 0
    x, y = _normalise(train_emb[keep_tr]).cpu(), train_labels[keep_tr].long().cpu()
    if len(x) == 0 or not bool(keep_te.any()):
        raise DataError("linear probe: train and test need labelled rows")
    num_classes = int(max(y.max(), test_labels.max())) + 1
    w = torch.zeros(x.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    pred = (_normalise(test_emb[keep_te]).cpu() @ w.detach() + b.detach()).argmax(1)
    return (pred == test_labels[keep_te].cpu()).float().mean().item()
