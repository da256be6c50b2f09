"""Cached (GradCache) accumulation reproduces the big batch exactly; naive does not."""

from __future__ import annotations

import pytest
import torch

from contrastkit.config import LossConfig
from contrastkit.losses.multitask import MultitaskLoss
from contrastkit.models.outputs import ModelOutput
from contrastkit.train.accumulation import accumulation_step
from contrastkit.train.accumulation.context import StepContext, split_batch
from helpers.train_toys import ToyCriterion, ToyModel, toy_data

WEIGHTS = {"contrastive": 1.0, "classification": 0.3}


def _grads(*modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient (zeros where no term reached it)."""
    return {
        f"{i}.{n}": torch.zeros_like(p) if p.grad is None else p.grad.clone()
        for i, m in enumerate(modules)
        for n, p in m.named_parameters()
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
    sums = [
        criterion.auxiliary(o, mb)["classification"]
        for o, mb in zip(outs, split_batch(batch, parts), strict=True)
    ]
    aux = sum(t.total for t in sums) / sum(t.count for t in sums)
    total = total + WEIGHTS["classification"] * aux
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


# --------------------------------------------------------------- every term, exactly

VOCAB, LENGTH, TOKENS, WIDTH = 5, 9, 4, 3


class TermsModel(torch.nn.Module):
    """Two toy towers plus a head per auxiliary term, reading fixed per-row inputs.

    Captions (targets, −100 padded), masked positions and teacher embeddings come from the
    batch, so each micro-batch's denominators are what the test sets them to.
    """

    def __init__(self) -> None:
        super().__init__()
        self.towers = ToyModel(dropout=0.0).towers
        self.classifier = torch.nn.Linear(8, 3)
        self.caption = torch.nn.Linear(8, VOCAB)
        self.position = torch.nn.Parameter(torch.randn(LENGTH, VOCAB))
        self.tokens = torch.nn.Linear(6, TOKENS * WIDTH)
        self.reconstruct = torch.nn.Linear(WIDTH, WIDTH)

    def forward(self, batch: dict) -> ModelOutput:
        towers = {"a": self.towers["a"](batch["x_a"]), "b": self.towers["b"](batch["x_b"])}
        pooled = towers["a"].pooled
        tokens = torch.tanh(self.tokens(batch["x_a"])).view(-1, TOKENS, WIDTH)
        return ModelOutput(
            towers=towers,
            heads={
                "classification": {"logits": self.classifier(pooled)},
                "captioning": {
                    "logits": self.caption(pooled)[:, None, :] + self.position,
                    "targets": batch["caption_targets"],
                },
                "masked": {
                    "prediction": self.reconstruct(tokens),
                    "target": tokens.detach(),
                    "mask": batch["masked"],
                },
            },
            extras={"teacher:a": batch["teacher_a"], "teacher:b": batch["teacher_b"]},
        )


def _terms_batch() -> dict:
    """12 rows in 3 micro-batches of 4: rows 0-3 unlabelled; captions of 1 token (rows
    0-3) vs 9 tokens (rows 4-7) vs mixed; 1, 4 and 2 masked tokens per row."""
    batch = {k: v for k, v in toy_data(12, dtype=torch.float64).items()}
    g = torch.Generator().manual_seed(5)
    batch["label"][:4] = -1
    lengths = torch.tensor([1] * 4 + [9] * 4 + [2, 5, 9, 3])
    ids = torch.randint(0, VOCAB, (12, LENGTH), generator=g)
    batch["caption_targets"] = ids.masked_fill(torch.arange(LENGTH) >= lengths[:, None], -100)
    per_row = torch.tensor([1] * 4 + [4] * 4 + [2] * 4)
    batch["masked"] = torch.arange(TOKENS) < per_row[:, None]
    teacher = torch.randn(2, 12, 4, generator=g, dtype=torch.float64)
    batch["teacher_a"], batch["teacher_b"] = torch.nn.functional.normalize(teacher, dim=-1)
    return batch


def _terms_loss() -> MultitaskLoss:
    cfg = LossConfig.model_validate(
        {
            "objectives": [{"type": "clip", "towers": ["a", "b"], "temperature": 0.2}],
            "captioning": {"weight": 0.7, "label_smoothing": 0.1},
            "masked": {"weight": 0.4},
            "classification": {"weight": 0.3},
            "distillation": {"weight": 0.2, "temperature": 0.5},
        }
    )
    return MultitaskLoss(cfg).double()


ALL_TERMS = {
    "contrastive": 1.0,
    "captioning": 0.7,
    "masked": 0.4,
    "classification": 0.3,
    "distillation": 0.2,
}
# Naive accumulation keeps each micro-batch's own negatives (and distillation targets), so
# only its per-unit terms can equal the full batch's.
PER_UNIT_TERMS = {"contrastive": 0.0, "captioning": 0.7, "masked": 0.4, "classification": 0.3}


def _full_and_accumulated(mode: str, weights: dict[str, float]):
    torch.manual_seed(0)
    model, criterion, batch = TermsModel().double(), _terms_loss(), _terms_batch()
    full = criterion(model(batch), batch, weights)
    full.total.backward()
    want = _grads(model, criterion)
    model.zero_grad(), criterion.zero_grad()
    got = accumulation_step(
        model, criterion, batch, weights, StepContext(), accumulate=3, mode=mode
    )
    return full, want, got, _grads(model, criterion)


@pytest.mark.parametrize(
    ("mode", "weights"), [("cached", ALL_TERMS), ("naive", PER_UNIT_TERMS)], ids=str
)
def test_accumulation_equals_the_full_batch_for_every_term(mode: str, weights) -> None:
    full, want, got, grads = _full_and_accumulated(mode, weights)
    for name in weights:
        if mode == "naive" and name == "contrastive":
            continue  # own negatives per micro-batch, by design
        assert float(got.terms[name]) == pytest.approx(
            float(full.terms[name].detach()), rel=1e-12
        ), name
    if mode == "cached":
        assert float(got.total) == pytest.approx(float(full.total.detach()), rel=1e-12)
    for name, g in grads.items():
        torch.testing.assert_close(g, want[name], rtol=1e-10, atol=1e-13, msg=name)


def test_per_unit_denominators_differ_between_micro_batches() -> None:
    # The setup the exactness test relies on: unequal counts per micro-batch, so a
    # row-share average of micro-batch means would differ from the full batch.
    torch.manual_seed(0)
    model, criterion, batch = TermsModel().double(), _terms_loss(), _terms_batch()
    per_micro = [criterion.auxiliary(model(mb), mb) for mb in split_batch(batch, 3)]
    assert [float(p["classification"].count) for p in per_micro] == [0.0, 4.0, 4.0]
    assert [float(p["captioning"].count) for p in per_micro] == [4.0, 36.0, 19.0]
    assert [float(p["masked"].count) for p in per_micro] == [4.0, 16.0, 8.0]
