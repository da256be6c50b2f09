"""Decoding strategies on hand-built bigram "decoders" whose probabilities are known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from contrastkit.models.heads import generation

PAD, BOS, EOS = 0, 1, 2
SPECIAL = {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD}


def bigram_step(tables: Tensor):
    """A step function whose next-token distribution depends only on the last token.

    ``tables`` is S x V x V of probabilities; sample b uses table ``memory[b, 0, 0]``.
    """
    logits = torch.log(tables.clamp(min=1e-12))

    def step(ids: Tensor, memory: Tensor, mask: Tensor | None) -> Tensor:
        return logits[memory[:, 0, 0].long(), ids[:, -1]]

    return step


def table(vocab: int, transitions: dict[int, dict[int, float]]) -> Tensor:
    probs = torch.zeros(vocab, vocab, dtype=torch.float64)
    for source, targets in transitions.items():
        for target, p in targets.items():
            probs[source, target] = p
    return probs


def memory_for(selectors: list[int]) -> Tensor:
    return torch.tensor(selectors, dtype=torch.float32).view(-1, 1, 1)


# tokens: 3 A, 4 B, 5 C, 6 X, 7..10 Y, 11 P, 12 Q, 13..17 fillers
YS = range(7, 11)
FILLERS = range(13, 18)
PRUNING = table(
    18,
    {
        BOS: {3: 0.4, 4: 0.35, 5: 0.25},
        3: {6: 0.21, **{y: 0.1975 for y in YS}},
        4: {11: 0.5, 12: 0.5},
        5: {EOS: 1.0},
        6: {EOS: 1.0},
        **{y: {EOS: 1.0} for y in YS},
        11: {f: 0.2 for f in FILLERS},
        12: {f: 0.2 for f in FILLERS},
        **{f: {EOS: 1.0} for f in FILLERS},
    },
)


def test_greedy_follows_the_argmax_chain_and_scores_it() -> None:
    step = bigram_step(PRUNING.unsqueeze(0))
    tokens, scores = generation.greedy_with_scores(
        step, memory_for([0]), None, max_length=6, **SPECIAL
    )
    assert tokens.tolist() == [[3, 6, EOS]]
    assert scores.item() == pytest.approx(math.log(0.4 * 0.21))


def test_beam_finds_the_better_path_greedy_misses() -> None:
    # BOS -> A (0.55) -> one of five fillers (0.2 each) -> EOS: 0.11; BOS -> B -> EOS: 0.45.
    probs = table(10, {BOS: {3: 0.55, 4: 0.45}, 3: {f: 0.2 for f in range(5, 10)}, 4: {EOS: 1.0}})
    probs[5:10, EOS] = 1.0
    step = bigram_step(probs.unsqueeze(0))
    memory = memory_for([0])
    assert generation.greedy_search(step, memory, None, max_length=5, **SPECIAL).tolist() == [
        [3, 5, EOS]
    ]
    beam = generation.beam_search(step, memory, None, max_length=5, beam_size=2, **SPECIAL)
    assert beam.tolist() == [[4, EOS]]


def test_beam_keeps_greedy_when_plain_beam_search_would_prune_it() -> None:
    # Greedy: A -> X -> EOS = 0.084. With 2 beams, B->P and B->Q (0.175 each) push every
    # A-prefix out at step 2 and then fall to 0.035; the greedy hypothesis must win.
    step = bigram_step(PRUNING.unsqueeze(0))
    beam = generation.beam_search(step, memory_for([0]), None, max_length=6, beam_size=2, **SPECIAL)
    assert beam.tolist() == [[3, 6, EOS]]
    # with 3 beams C -> EOS (0.25) survives and beats greedy
    beam3 = generation.beam_search(
        step, memory_for([0]), None, max_length=6, beam_size=3, **SPECIAL
    )
    assert beam3.tolist() == [[5, EOS]]


def test_length_penalty_prefers_longer_sequences() -> None:
    # BOS -> EOS: 0.4 in total and per token; BOS -> A -> B -> EOS: 0.33 in total but
    # exp(log(0.33) / 3) = 0.69 per token.
    probs = table(6, {BOS: {EOS: 0.4, 3: 0.6}, 3: {4: 0.55, 5: 0.45}, 4: {EOS: 1.0}, 5: {EOS: 1.0}})
    step = bigram_step(probs.unsqueeze(0))
    memory = memory_for([0])
    kwargs = {"max_length": 3, "beam_size": 3, **SPECIAL}
    assert generation.beam_search(step, memory, None, **kwargs).tolist() == [[EOS]]
    longer = generation.beam_search(step, memory, None, length_penalty=1.0, **kwargs)
    assert longer.tolist() == [[3, 4, EOS]]


def test_stops_at_eos_and_pads_per_sample() -> None:
    short = table(6, {BOS: {EOS: 1.0}})
    long = table(6, {BOS: {3: 1.0}, 3: {4: 1.0}, 4: {EOS: 1.0}})
    step = bigram_step(torch.stack([short, long]))
    memory = memory_for([0, 1])
    expected = [[EOS, PAD, PAD], [3, 4, EOS]]
    for method in (generation.greedy_search, generation.beam_search, generation.sample):
        assert method(step, memory, None, max_length=10, **SPECIAL).tolist() == expected


def test_max_length_caps_sequences_without_eos() -> None:
    loop = table(5, {BOS: {3: 1.0}, 3: {4: 1.0}, 4: {3: 1.0}})
    step = bigram_step(loop.unsqueeze(0))
    tokens = generation.beam_search(
        step, memory_for([0]), None, max_length=4, beam_size=2, **SPECIAL
    )
    assert tokens.tolist() == [[3, 4, 3, 4]]


def test_pad_and_bos_are_never_generated() -> None:
    probs = table(5, {BOS: {PAD: 0.5, BOS: 0.3, 3: 0.2}, 3: {PAD: 0.9, EOS: 0.1}})
    step = bigram_step(probs.unsqueeze(0))
    for method in (generation.greedy_search, generation.beam_search, generation.sample):
        assert method(step, memory_for([0]), None, max_length=4, **SPECIAL).tolist() == [[3, EOS]]


def test_filter_logits_top_k_and_top_p_by_hand() -> None:
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    inf = float("-inf")
    top2 = generation.filter_logits(logits, top_k=2)
    assert torch.equal(top2.isinf(), torch.tensor([[True, False, False]]))
    # nucleus 0.6: 0.5 alone is < 0.6, so 0.3 joins; 0.2 is left out
    assert generation.filter_logits(logits, top_p=0.6)[0, 0].item() == inf
    assert generation.filter_logits(logits, top_p=0.6)[0, 1:].isfinite().all()
    # nucleus 0.5 is reached by the top token alone
    assert generation.filter_logits(logits, top_p=0.5).isfinite().sum().item() == 1
    assert generation.filter_logits(logits, top_p=1.0).isfinite().all()
    with pytest.raises(ValueError, match="top_p"):
        generation.filter_logits(logits, top_p=0.0)
    with pytest.raises(ValueError, match="top_k"):
        generation.filter_logits(logits, top_k=0)


def test_sampling_frequencies_follow_temperature() -> None:
    probs = table(5, {BOS: {3: 0.7, 4: 0.3}, 3: {EOS: 1.0}, 4: {EOS: 1.0}})
    step = bigram_step(probs.unsqueeze(0))
    memory = memory_for([0] * 4000)
    torch.manual_seed(0)
    first = generation.sample(step, memory, None, max_length=3, **SPECIAL)[:, 0]
    assert (first == 3).float().mean().item() == pytest.approx(0.7, abs=0.03)
    hot = generation.sample(step, memory, None, max_length=3, temperature=2.0, **SPECIAL)[:, 0]
    expected = 0.7**0.5 / (0.7**0.5 + 0.3**0.5)  # p^(1/T), renormalised
    assert (hot == 3).float().mean().item() == pytest.approx(expected, abs=0.03)
    for greedy_like in ({"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-3}):
        tokens = generation.sample(step, memory[:50], None, max_length=3, **greedy_like, **SPECIAL)
        assert (tokens[:, 0] == 3).all()


def test_sampling_is_reproducible_with_seed_or_generator() -> None:
    probs = torch.softmax(torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(1)), -1)
    step = bigram_step(probs)
    memory = memory_for([0] * 16)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(generation.sample(step, memory, None, max_length=6, **SPECIAL))
    assert torch.equal(runs[0], runs[1])
    a = generation.sample(
        step, memory, None, max_length=6, generator=torch.Generator().manual_seed(5), **SPECIAL
    )
    b = generation.sample(
        step, memory, None, max_length=6, generator=torch.Generator().manual_seed(5), **SPECIAL
    )
    c = generation.sample(
        step, memory, None, max_length=6, generator=torch.Generator().manual_seed(6), **SPECIAL
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="temperature"):
        generation.sample(step, memory, None, max_length=6, temperature=0.0, **SPECIAL)
