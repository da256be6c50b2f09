"""R@1 recomputed by brute force from a run directory, independently of `contrastkit.eval`.

The tests compare it with the `<split>/<q>_to_<g>/R@1` a run wrote to summary.json, so a
wrong metric, a wrong checkpoint or a wrong split in the final evaluation makes them fail.
Only the model (`load_run`, `model.encode`) and the data loading are shared with the code
under test; de-duplication, scoring and the hit rule are written out here again, in float64:

* each tower's rows are de-duplicated by (group, raw values of the tower's input columns),
  first occurrence kept, for queries and gallery alike (five captions of one image give
  one image in the gallery);
* score = cosine similarity of the L2-normalised embeddings;
* a query is a hit when its best positive (same group) scores strictly above every
  negative (ties are pessimistic: a negative tied with the best positive wins);
* queries without a positive in the gallery are not scored;
* one tower (`q == g`, e.g. chart -> chart) is leave-one-out: the query itself is no
  candidate, so a group of one has no positive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from contrastkit.data import collate, to_device
from contrastkit.train.checkpoint import LoadedRun, load_run


def _key(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def unique_embeddings(
    loaded: LoadedRun, split: str, tower: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 L2-normalised embeddings (U x E) of the tower's unique inputs, their group
    ids (U) and class labels (U, -1 = none)."""
    dataset = loaded.bundle.splits[split]
    columns = list(loaded.model.tower_inputs(tower))
    seen: set[tuple[int, str]] = set()
    rows: list[int] = []
    groups: list[int] = []
    for i, row in enumerate(dataset.rows):
        key = (int(dataset.group_ids[i]), _key([row.values.get(c) for c in columns]))
        if key not in seen:
            seen.add(key)
            rows.append(i)
            groups.append(key[0])
    device = next(loaded.model.parameters()).device
    size = loaded.config.data.eval_batch_size
    chunks, labels = [], []
    loaded.model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), size):
            samples = [dataset[i] for i in rows[start : start + size]]
            labels += [int(s.get("label", -1)) for s in samples]
            out = loaded.model.encode(tower, to_device(collate(samples), device))
            chunks.append(out.embedding.detach().cpu().double().numpy())
    return _unit(np.concatenate(chunks)), np.asarray(groups), np.asarray(labels)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_at_1(
    q: np.ndarray, gq: np.ndarray, g: np.ndarray, gg: np.ndarray, *, leave_one_out: bool
) -> float:
    """Share of queries (with at least one positive) whose best positive beats every
    negative strictly. With `leave_one_out`, q and g are the same set and item i is no
    candidate for query i."""
    scores = q.astype(np.float64) @ g.astype(np.float64).T
    positive = gq[:, None] == gg[None, :]
    if leave_one_out:
        np.fill_diagonal(positive, False)
        np.fill_diagonal(scores, -np.inf)
    best_pos = np.where(positive, scores, -np.inf).max(axis=1)
    best_neg = np.where(positive, -np.inf, scores).max(axis=1)
    scored = positive.any(axis=1)
    assert scored.any(), "no query has a positive"
    return float((best_pos[scored] > best_neg[scored]).mean())


def brute_force_r1(run_dir: str | Path, keys: list[str]) -> dict[str, float]:
    """R@1 for summary keys `<split>/<q>_to_<g>/R@1`, from the run's best checkpoint."""
    loaded = load_run(run_dir, "best", with_data=True)
    cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def emb(split: str, tower: str) -> tuple[np.ndarray, np.ndarray]:
        if (split, tower) not in cache:
            cache[split, tower] = unique_embeddings(loaded, split, tower)[:2]
        return cache[split, tower]

    out = {}
    for key in keys:
        split, pair, metric = key.split("/")
        assert metric == "R@1", key
        qt, gt = pair.split("_to_")
        (q, gq), (g, gg) = emb(split, qt), emb(split, gt)
        out[key] = recall_at_1(q, gq, g, gg, leave_one_out=qt == gt)
    return out


def brute_force_zero_shot(
    run_dir: str | Path, split: str, tower: str, text_tower: str, prompts: list[str]
) -> float:
    """Zero-shot accuracy of `tower` on `split` (unique labelled inputs), best checkpoint:
    each class embedded as the re-normalised mean of its L2-normalised prompt embeddings
    (CLIP prompt ensembling); the prediction is the most similar class."""
    loaded = load_run(run_dir, "best", with_data=True)
    emb, _, labels = unique_embeddings(loaded, split, tower)
    names = [
        n for n, _ in sorted(loaded.bundle.splits[split].label_index.items(), key=lambda kv: kv[1])
    ]
    (column,) = loaded.model.tower_inputs(text_tower)
    with torch.no_grad():
        per_prompt = [
            _unit(
                loaded.model.encode(text_tower, {column: [p.format(label=n) for n in names]})
                .embedding.cpu()
                .double()
                .numpy()
            )
            for p in prompts
        ]
    classes = _unit(np.mean(per_prompt, axis=0))
    keep = labels >= 0
    pred = (emb[keep] @ classes.T).argmax(axis=1)
    return float((pred == labels[keep]).mean())


# float32 cosine scores of unit vectors carry ~1e-7 rounding per product and a few ulps
# of accumulation; a float64 margin below this may fall either way in the run's float32
# ranking, so such a query is counted as undecided rather than a hit or a miss.
FLOAT32_MARGIN = 1e-6


def brute_force_r1_bounds(run_dir: str | Path, key: str) -> tuple[float, float]:
    """(lowest, highest) R@1 of `key` over the queries whose best positive and best
    negative differ by less than `FLOAT32_MARGIN` (float32 near-ties); equal bounds when
    no query is that close. Same de-duplication and hit rule as `brute_force_r1`."""
    loaded = load_run(run_dir, "best", with_data=True)
    split, pair, metric = key.split("/")
    assert metric == "R@1", key
    qt, gt = pair.split("_to_")
    q, gq, _ = unique_embeddings(loaded, split, qt)
    g, gg, _ = unique_embeddings(loaded, split, gt)
    scores = q @ g.T
    positive = gq[:, None] == gg[None, :]
    if qt == gt:
        np.fill_diagonal(positive, False)
        np.fill_diagonal(scores, -np.inf)
    margin = np.where(positive, scores, -np.inf).max(axis=1) - np.where(
        positive, -np.inf, scores
    ).max(axis=1)
    margin = margin[positive.any(axis=1)]
    sure = float((margin >= FLOAT32_MARGIN).mean())
    return sure, sure + float((np.abs(margin) < FLOAT32_MARGIN).mean())
