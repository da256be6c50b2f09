"""Cached (GradCache) accumulation reproduces the big batch exactly; naive does not."""

from __future__ import annotations

import pytest
import torch
from train_toys import ToyCriterion, ToyModel, toy_data

from contrastkit.train.accumulation import StepContext, accumulation_step, split_batch

WEIGHTS = {"contrastive": 1.0, "classification": 0.3}


def _grads(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        f"{i}.{n}": p.grad.clone() for i, m in enumerate(modules) for n, p in m.named_parameters()
    }


def _setup(dropout: float):
    torch.manual_seed(0)
    model = ToyModel(dropout=dropout).double().train()
    criterion = ToyCriterion().double()
    batch = toy_data(32, dtype=torch.float64)
    return model, criterion, batch


def _reference_full_batch(model, criterion, batch, parts: int, seed: int):
    """Loss of the whole batch with one graph; forwards in micro-batch order (same RNG draws)."""
    torch.manual_seed(seed)
    outs = [model(mb) for mb in split_batch(batch, parts)]
    emb = {t: torch.cat([o.embeddings[t] for o in outs]) for t in ("a", "b")}
    terms, _ = criterion.contrastive(emb, batch)
    total = WEIGHTS["contrastive"] * terms["contrastive"]
    for o, mb in zip(outs, split_batch(batch, parts), strict=True):
        aux = criterion.auxiliary(o, mb)["classification"]
        total = total + WEIGHTS["classification"] * aux * len(mb["group_ids"]) / len(
            batch["group_ids"]
        )
    total.backward()
    return total.detach()


def _cached(model, criterion, batch, parts: int, seed: int, replay: bool = True):
    torch.manual_seed(seed)
    ctx = StepContext(replay_rng=replay)
    return accumulation_step(
        model, criterion, batch, WEIGHTS, ctx, accumulate=parts, mode="cached"
    ).total


def test_cached_equals_single_forward_without_dropout() -> None:
    model, criterion, batch = _setup(dropout=0.0)
    out = model(batch)
    full = criterion(out, batch, WEIGHTS).total
    full.backward()
    want = _grads(model, criterion)
    model.zero_grad(), criterion.zero_grad()
    got = _cached(model, criterion, batch, parts=4, seed=1)
    assert torch.allclose(got, full.detach(), rtol=0, atol=1e-12)
    for name, g in _grads(model, criterion).items():
        torch.testing.assert_close(g, want[name], rtol=1e-10, atol=1e-12, msg=name)


def test_cached_with_dropout_equals_full_batch_graph() -> None:
    model, criterion, batch = _setup(dropout=0.3)
    want_loss = _reference_full_batch(model, criterion, batch, parts=4, seed=7)
    want = _grads(model, criterion)
    model.zero_grad(), criterion.zero_grad()
    got = _cached(model, criterion, batch, parts=4, seed=7)
    assert torch.allclose(got, want_loss, rtol=0, atol=1e-12)
    for name, g in _grads(model, criterion).items():
        torch.testing.assert_close(g, want[name], rtol=1e-10, atol=1e-12, msg=name)


def test_without_rng_replay_gradients_differ() -> None:
    model, criterion, batch = _setup(dropout=0.3)
    _reference_full_batch(model, criterion, batch, parts=4, seed=7)
    want = _grads(model)
    model.zero_grad(), criterion.zero_grad()
    _cached(model, criterion, batch, parts=4, seed=7, replay=False)
    diffs = [float((g - want[n]).abs().max()) for n, g in _grads(model).items()]
    assert max(diffs) > 1e-4


def test_naive_accumulation_sees_only_local_negatives() -> None:
    model, criterion, batch = _setup(dropout=0.0)
    full = criterion(model(batch), batch, WEIGHTS)
    naive = accumulation_step(
        model, criterion, batch, WEIGHTS, StepContext(), accumulate=4, mode="naive"
    )
    micro = split_batch(batch, 4)
    local = sum(criterion(model(mb), mb, WEIGHTS).total for mb in micro) / 4
    assert torch.allclose(naive.total, local.detach(), atol=1e-12)
    # With 4x fewer negatives per row the InfoNCE loss is smaller than the big batch's.
    assert naive.terms["contrastive"] < full.terms["contrastive"].detach() - 1e-3


def test_rng_after_step_matches_plain_forward_order() -> None:
    model, criterion, batch = _setup(dropout=0.3)
    _cached(model, criterion, batch, parts=4, seed=3)
    after_cached = torch.rand(3)
    torch.manual_seed(3)
    for mb in split_batch(batch, 4):
        model(mb)
    assert torch.equal(torch.rand(3), after_cached)


@pytest.mark.parametrize(
    ("size", "parts", "want"), [(10, 4, [2, 3, 2, 3]), (8, 2, [4, 4]), (3, 5, [1, 1, 1])]
)
def test_split_batch_sizes(size: int, parts: int, want: list[int]) -> None:
    batch = {"group_ids": torch.arange(size), "text": [str(i) for i in range(size)], "meta": "x"}
    micro = split_batch(batch, parts)
    assert [len(m["group_ids"]) for m in micro] == want
    assert sum((m["text"] for m in micro), []) == batch["text"]
    assert all(m["meta"] == "x" for m in micro)
