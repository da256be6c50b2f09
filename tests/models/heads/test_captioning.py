"""CaptioningDecoder: masking, teacher-forcing targets, scoring and decoding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastkit.models.heads import CaptioningDecoder
from contrastkit.models.heads.kv_cache import IncrementalStep

PAD, BOS, EOS = 0, 1, 2
VOCAB, MEMORY_DIM = 20, 8


def make_decoder(seed: int = 0, **overrides: object) -> CaptioningDecoder:
    torch.manual_seed(seed)
    kwargs = {
        "vocab_size": VOCAB,
        "memory_dim": MEMORY_DIM,
        "width": 16,
        "depth": 2,
        "heads": 2,
        "dropout": 0.0,
        "max_length": 12,
        "pad_id": PAD,
        "bos_id": BOS,
        "eos_id": EOS,
    }
    kwargs.update(overrides)
    return CaptioningDecoder(**kwargs).eval()


def make_inputs(batch: int = 3, tokens: int = 5, length: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(batch, tokens, MEMORY_DIM, generator=g)
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    mask[0, 3:] = False
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    ids[:, 0] = BOS
    return memory, mask, ids


def test_shapes_and_targets_ignore_pads() -> None:
    decoder = make_decoder()
    memory, mask, ids = make_inputs()
    ids[0, 4] = EOS
    ids[0, 5:] = PAD
    logits, targets = decoder(memory, mask, ids)
    assert logits.shape == (3, 6, VOCAB)
    assert targets[0].tolist() == ids[0, 1:5].tolist() + [-100, -100]
    assert torch.equal(targets[1:], ids[1:, 1:])


def test_causal_self_attention_does_not_look_ahead() -> None:
    decoder = make_decoder()
    memory, mask, ids = make_inputs()
    logits, _ = decoder(memory, mask, ids)
    t = 2
    changed = ids.clone()
    changed[:, t + 1] = (changed[:, t + 1] + 1 - 3) % (VOCAB - 3) + 3
    logits2, _ = decoder(memory, mask, changed)
    torch.testing.assert_close(logits2[:, : t + 1], logits[:, : t + 1])
    assert not torch.allclose(logits2[:, t + 1], logits[:, t + 1])


def test_cross_attention_ignores_masked_memory_tokens() -> None:
    decoder = make_decoder()
    memory, mask, ids = make_inputs()
    logits, _ = decoder(memory, mask, ids)
    changed = memory.clone()
    changed[0, 3:] = 100.0  # padded memory of sample 0
    torch.testing.assert_close(decoder(changed, mask, ids)[0], logits)
    changed[0, 0] = 100.0  # a real memory token
    assert not torch.allclose(decoder(changed, mask, ids)[0][0], logits[0])


def test_rejects_inputs_longer_than_positions_and_empty_memory() -> None:
    decoder = make_decoder()
    memory, mask, _ = make_inputs()
    with pytest.raises(ValueError, match="max_length"):
        decoder(memory, mask, torch.full((3, 14), 5))
    with pytest.raises(ValueError, match="memory"):
        decoder(memory, torch.zeros_like(mask), torch.full((3, 4), 5))


def test_sequence_log_prob_stops_at_eos() -> None:
    decoder = make_decoder()
    memory, mask, ids = make_inputs()
    ids[0, 3] = EOS  # tokens after EOS (not padded here) must not count
    ids[1, 5:] = PAD
    logits, _ = decoder(memory, mask, ids)
    token_logp = -F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    expected = torch.stack([token_logp[0, :3].sum(), token_logp[1, :4].sum(), token_logp[2].sum()])
    torch.testing.assert_close(decoder.sequence_log_prob(memory, mask, ids), expected)


def with_bos(tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full((tokens.shape[0], 1), BOS), tokens], dim=1)


@pytest.mark.parametrize("seed", range(4))
def test_beam_search_scores_at_least_greedy(seed: int) -> None:
    decoder = make_decoder(seed, vocab_size=8)
    memory, mask, _ = make_inputs(batch=4, seed=seed)
    greedy = decoder.generate(memory, mask, method="greedy", max_length=8)
    greedy_lp = decoder.sequence_log_prob(memory, mask, with_bos(greedy))
    for beam_size in (2, 4):
        beam = decoder.generate(memory, mask, method="beam", beam_size=beam_size, max_length=8)
        beam_lp = decoder.sequence_log_prob(memory, mask, with_bos(beam))
        assert (beam_lp >= greedy_lp - 1e-5).all()


def test_beam_size_one_and_greedy_like_sampling_equal_greedy() -> None:
    decoder = make_decoder(3)
    memory, mask, _ = make_inputs(batch=4)
    greedy = decoder.generate(memory, mask, method="greedy", max_length=10)
    assert torch.equal(
        decoder.generate(memory, mask, method="beam", beam_size=1, max_length=10), greedy
    )
    for options in ({"top_k": 1}, {"top_p": 1e-6}):
        sampled = decoder.generate(memory, mask, method="sample", max_length=10, **options)
        assert torch.equal(sampled, greedy)


def test_generated_sequences_end_at_eos_then_pad() -> None:
    decoder = make_decoder(4, vocab_size=6)  # few tokens: EOS comes early
    memory, mask, _ = make_inputs(batch=16, seed=4)
    torch.manual_seed(0)
    for method in ("greedy", "beam", "sample"):
        tokens = decoder.generate(
            memory.expand(16, -1, -1) if False else memory, mask, method=method
        )
        assert tokens.shape[1] <= decoder.max_length - 1
        assert not (tokens == BOS).any()
        for row in tokens.tolist():
            end = row.index(EOS) + 1 if EOS in row else len(row)
            assert PAD not in row[:end]
            assert all(t == PAD for t in row[end:])
    assert (tokens == EOS).any() and (tokens == PAD).any()


def test_sampling_reproducible_with_seed_and_generate_restores_mode() -> None:
    decoder = make_decoder(5).train()
    memory, mask, _ = make_inputs(batch=8)
    torch.manual_seed(7)
    a = decoder.generate(memory, mask, method="sample", temperature=1.5)
    torch.manual_seed(7)
    b = decoder.generate(memory, mask, method="sample", temperature=1.5)
    assert torch.equal(a, b)
    assert decoder.training
    with pytest.raises(ValueError, match="method"):
        decoder.generate(memory, mask, method="nucleus")  # type: ignore[arg-type]


def test_memorises_three_reports_with_numbers() -> None:
    # ids: 3..9 digits "0".."6", 10 "%", 11 "EF", 12 "normal", 13 "mm", 14 "LV"
    reports = torch.tensor(
        [
            [BOS, 11, 8, 3, 10, 12, EOS, PAD, PAD],
            [BOS, 14, 6, 9, 13, EOS, PAD, PAD, PAD],
            [BOS, 11, 5, 7, 10, 14, 4, 13, EOS],
        ]
    )
    decoder = make_decoder(6, width=32, depth=1, dropout=0.0).train()
    memory = torch.randn(3, 4, MEMORY_DIM, generator=torch.Generator().manual_seed(6))
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(60):  # memorised after ~10 steps; 60 leaves margin
        logits, targets = decoder(memory, None, reports)
        loss = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    expected = reports[:, 1:]
    for method in ("greedy", "beam"):
        assert torch.equal(decoder.generate(memory, None, method=method), expected)


def test_incremental_step_matches_full_recompute() -> None:
    decoder = make_decoder(7)
    memory, mask, ids = make_inputs()
    projected = decoder.project_memory(memory)
    full = decoder.logits(ids, projected, mask)
    step = IncrementalStep(decoder)
    for t in range(1, ids.shape[1] + 1):
        torch.testing.assert_close(step(ids[:, :t], projected, mask), full[:, t - 1])
        assert step.caches[0].self_k is not None and step.caches[0].self_k.shape[2] == t
    # a prefix that does not extend the cached one (rows swapped) rebuilds the cache
    swapped = ids[[1, 0, 2]]
    expected = decoder.logits(swapped, projected, mask)[:, -1]
    torch.testing.assert_close(step(swapped, projected, mask), expected)


def test_incremental_step_reorder_follows_beam_rows() -> None:
    # as in beam search: rows share one sample's memory and are permuted between steps
    decoder = make_decoder(7)
    memory, _, ids = make_inputs()
    projected = decoder.project_memory(memory[:1]).expand(3, -1, -1)
    step = IncrementalStep(decoder)
    step(ids[:, :4], projected, None)
    rows = torch.tensor([2, 2, 0])
    step.reorder(rows)
    caches = step.caches
    extended = torch.cat([ids[rows, :4], torch.full((3, 1), 5)], dim=1)
    expected = decoder.logits(extended, projected, None)[:, -1]
    torch.testing.assert_close(step(extended, projected, None), expected)
    assert step.caches is caches  # extended in place, not rebuilt
    unordered = torch.cat([ids[:, :5], torch.full((3, 1), 5)], dim=1)
    step(unordered, projected, None)  # does not extend the reordered prefix: rebuilt
    assert step.caches is not caches


def test_cached_generation_equals_uncached() -> None:
    decoder = make_decoder(8, vocab_size=10)
    memory, mask, _ = make_inputs(batch=5, seed=8)
    for method in ("greedy", "beam", "sample"):
        outputs = []
        for use_cache in (True, False):
            torch.manual_seed(2)
            outputs.append(
                decoder.generate(memory, mask, method=method, beam_size=3, use_cache=use_cache)
            )
        assert torch.equal(outputs[0], outputs[1])
