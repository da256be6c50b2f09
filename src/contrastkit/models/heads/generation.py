"""Decoding strategies for autoregressive captioning decoders.

Every strategy works on a ``step(ids, memory, memory_mask) -> logits`` callable that maps a
batch of prefixes ``ids`` (B x t, starting with BOS) to the logits of the next token (B x V),
so the strategies know nothing about the decoder's internals. They all return the generated
tokens after BOS (B x L'), EOS included where one was produced, ``pad_id`` after it, and
trailing all-pad columns trimmed.

Shared rules:
    * BOS and PAD are never generated (their log-probability is set to -inf *after* the
      log-softmax, so the scores stay the model's own log-probabilities, comparable with
      ``CaptioningDecoder.sequence_log_prob``).
    * A sequence's score is the sum of the log-probabilities of its tokens up to and
      including EOS (or up to ``max_length`` tokens if it never ends).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

StepFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
ChooseFn = Callable[[Tensor], Tensor]


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Keep only the top-k and / or the nucleus (top-p) tokens; the rest get -inf.

    Nucleus sampling: Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration".
    The nucleus is the smallest set of most likely tokens whose probability mass reaches
    ``top_p``; the most likely token is always kept, so a tiny ``top_p`` is greedy.

    Args:
        logits: B x V.
        top_k: keep the k largest logits (None: no limit).
        top_p: keep the nucleus of mass top_p, 0 < top_p <= 1 (None: no limit).

    Returns:
        B x V logits with filtered entries set to -inf.
    """
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        k = min(top_k, logits.shape[-1])
        kth = logits.topk(k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs
        drop_sorted = mass_before >= top_p
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def greedy_search(
    step: StepFn,
    memory: Tensor,
    memory_mask: Tensor | None,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
) -> Tensor:
    """Pick the most likely token at every step.

    Returns:
        LongTensor B x L' of generated tokens (see module docstring).
    """
    tokens, _ = greedy_with_scores(
        step,
        memory,
        memory_mask,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_length=max_length,
    )
    return tokens


def greedy_with_scores(
    step: StepFn,
    memory: Tensor,
    memory_mask: Tensor | None,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
) -> tuple[Tensor, Tensor]:
    """Greedy decoding that also returns each sequence's summed log-probability (B)."""
    return _decode_one_path(
        step,
        memory,
        memory_mask,
        lambda logits: logits.argmax(dim=-1),
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_length=max_length,
    )


def sample(
    step: StepFn,
    memory: Tensor,
    memory_mask: Tensor | None,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Ancestral sampling with temperature, top-k and nucleus (top-p) filtering.

    Random draws come from ``generator`` if given, else from torch's global RNG, so
    ``torch.manual_seed`` makes the output reproducible. ``top_k=1`` or a tiny ``top_p``
    reduce to greedy decoding.

    Returns:
        LongTensor B x L' of generated tokens (see module docstring).
    """
    if temperature <= 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")

    def choose(logits: Tensor) -> Tensor:
        filtered = filter_logits(logits / temperature, top_k=top_k, top_p=top_p)
        probs = filtered.float().softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    tokens, _ = _decode_one_path(
        step,
        memory,
        memory_mask,
        choose,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_length=max_length,
    )
    return tokens


def beam_search(
    step: StepFn,
    memory: Tensor,
    memory_mask: Tensor | None,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
    beam_size: int = 4,
    length_penalty: float = 0.0,
    reorder: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """Batch-vectorised beam search that never does worse than greedy.

    Every sample keeps ``beam_size`` hypotheses; each step expands all of them by every
    token and keeps the ``beam_size`` best by summed log-probability. A hypothesis that has
    produced EOS stays in the beam, finished (it can only be extended by PAD at no cost), and
    competes with live ones on its final score. Search stops when every beam is finished,
    at ``max_length`` or, without length penalty, as soon as each sample's best beam is
    finished (live scores can only fall).

    Plain beam search can prune the greedy path and end below it. To make "beam >= greedy"
    a guarantee, the greedy hypothesis is decoded too and returned where it scores higher.

    Args:
        beam_size: hypotheses kept per sample; 1 is exactly greedy decoding.
        length_penalty: exponent a of the final ranking score ``sum log p / length**a``
            (Wu et al. 2016 use a similar length normalisation). 0 (default) ranks by the
            plain summed log-probability, the quantity for which the greedy guarantee holds;
            with a > 0 the guarantee holds for the normalised score instead.
        reorder: called with the B*beam_size parent rows each step before the prefixes are
            extended, so a caching ``step`` can permute its caches alike.

    Returns:
        LongTensor B x L' of generated tokens (see module docstring).
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    batch, k = memory.shape[0], beam_size
    device = memory.device
    greedy_tokens, greedy_scores = greedy_with_scores(
        step,
        memory,
        memory_mask,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        max_length=max_length,
    )
    beam_memory = memory.repeat_interleave(k, dim=0)
    beam_mask = None if memory_mask is None else memory_mask.repeat_interleave(k, dim=0)

    seqs = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)
    scores[:, 1:] = float("-inf")  # start from one live beam so beams never duplicate
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, k, dtype=torch.long, device=device)
    offsets = torch.arange(batch, device=device).unsqueeze(1) * k
    for _ in range(max_length):
        logp = _next_log_probs(step(seqs, beam_memory, beam_mask), bos_id, eos_id, pad_id)
        vocab = logp.shape[-1]
        logp = logp.view(batch, k, vocab)
        pad_only = torch.full((vocab,), float("-inf"), device=device, dtype=logp.dtype)
        pad_only[pad_id] = 0.0
        logp = torch.where(finished.unsqueeze(-1), pad_only, logp)
        candidates = (scores.unsqueeze(-1) + logp).view(batch, k * vocab)
        scores, flat_index = candidates.topk(k, dim=-1)
        parent = torch.div(flat_index, vocab, rounding_mode="floor")
        token = flat_index % vocab
        rows = (parent + offsets).view(-1)
        if reorder is not None:
            reorder(rows)
        seqs = torch.cat([seqs[rows], token.view(-1, 1)], dim=1)
        parent_finished = finished.gather(1, parent)
        lengths = lengths.gather(1, parent) + (~parent_finished).long()
        finished = parent_finished | (token == eos_id)
        if finished.all() or (length_penalty == 0.0 and finished[:, 0].all()):
            break

    ranking = scores / lengths.clamp(min=1).to(scores.dtype) ** length_penalty
    best = ranking.argmax(dim=-1)
    best_rank = ranking.gather(1, best.unsqueeze(1)).squeeze(1)
    beam_tokens = seqs[:, 1:].view(batch, k, -1)[torch.arange(batch, device=device), best]

    greedy_lengths = (greedy_tokens != pad_id).sum(dim=1).clamp(min=1).to(scores.dtype)
    greedy_rank = greedy_scores.to(scores.dtype) / greedy_lengths**length_penalty
    width = max(beam_tokens.shape[1], greedy_tokens.shape[1])
    beam_tokens = _pad_to(beam_tokens, width, pad_id)
    greedy_tokens = _pad_to(greedy_tokens, width, pad_id)
    use_greedy = (greedy_rank > best_rank).unsqueeze(1)
    return _trim(torch.where(use_greedy, greedy_tokens, beam_tokens), pad_id)


def _decode_one_path(
    step: StepFn,
    memory: Tensor,
    memory_mask: Tensor | None,
    choose: ChooseFn,
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
) -> tuple[Tensor, Tensor]:
    """One hypothesis per sample; ``choose`` maps masked log-probs (B x V) to tokens (B)."""
    batch, device = memory.shape[0], memory.device
    seqs = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    for _ in range(max_length):
        logp = _next_log_probs(step(seqs, memory, memory_mask), bos_id, eos_id, pad_id)
        token = torch.where(finished, pad_id, choose(logp))
        gained = logp.gather(1, token.unsqueeze(1)).squeeze(1)
        scores = scores + torch.where(finished, 0.0, gained)
        seqs = torch.cat([seqs, token.unsqueeze(1)], dim=1)
        finished = finished | (token == eos_id)
        if finished.all():
            break
    return _trim(seqs[:, 1:], pad_id), scores


def _next_log_probs(logits: Tensor, bos_id: int, eos_id: int, pad_id: int) -> Tensor:
    """Log-softmax over the full vocabulary, then forbid BOS and PAD (unless they are EOS).

    Choosing among log-probs is the same as choosing among logits (softmax is monotone and
    ``logits / T`` only shifts by a per-row constant after log-softmax), so the strategies
    use these directly.
    """
    logp = logits.float().log_softmax(dim=-1)
    banned = [i for i in {bos_id, pad_id} if i != eos_id]
    logp[:, banned] = float("-inf")
    return logp


def _pad_to(tokens: Tensor, width: int, pad_id: int) -> Tensor:
    extra = width - tokens.shape[1]
    if extra == 0:
        return tokens
    return torch.cat([tokens, tokens.new_full((tokens.shape[0], extra), pad_id)], dim=1)


def _trim(tokens: Tensor, pad_id: int) -> Tensor:
    """Drop trailing columns that are PAD in every row."""
    used = (tokens != pad_id).any(dim=0).nonzero()
    return tokens[:, : int(used.max()) + 1] if used.numel() else tokens[:, :0]
