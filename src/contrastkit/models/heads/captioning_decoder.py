"""Captioning decoder network: a small transformer that writes the text from an encoder's tokens.

It cross-attends to the encoder tokens and is trained with teacher forcing (`forward`,
`run`); `generate` decodes with the strategies of `generation`, reusing the prefix's keys /
values through `kv_cache`. The head's config, registration and loss are in `captioning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from contrastkit.models.heads import generation
from contrastkit.models.heads.decoder_block import DecoderBlock
from contrastkit.models.heads.kv_cache import IncrementalStep, LayerCache
from contrastkit.models.outputs import TowerOutput

IGNORE_INDEX = -100  # targets with this id are skipped by F.cross_entropy


class CaptioningDecoder(nn.Module):
    """Transformer decoder over token ids, cross-attending to encoder tokens.

    Args:
        vocab_size: V, the tokenizer's vocabulary size.
        memory_dim: Dm, width of the encoder tokens (projected to ``width``).
        width, depth, heads, dropout: decoder size.
        max_length: number of learned positions; teacher-forced inputs (L - 1) and
            generated prefixes (BOS + tokens) must fit in it.
        pad_id, bos_id, eos_id: the tokenizer's special ids.
        text_column: batch column the decoder learns to write.
    """

    def __init__(
        self,
        vocab_size: int,
        memory_dim: int,
        width: int,
        depth: int,
        heads: int,
        dropout: float,
        max_length: int,
        pad_id: int,
        bos_id: int,
        eos_id: int,
        text_column: str = "text",
    ) -> None:
        super().__init__()
        self.text_column = text_column
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Parameter(torch.randn(max_length, width) * 0.02)
        self.memory_projection = nn.Sequential(nn.Linear(memory_dim, width), nn.LayerNorm(width))
        self.embedding_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(DecoderBlock(width, heads, dropout) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, vocab_size)

    def forward(
        self, memory: Tensor, memory_mask: Tensor | None, ids: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Teacher forcing: predict ``ids[:, 1:]`` from ``ids[:, :-1]``.

        Shape:
            memory: B x N x Dm; memory_mask: B x N bool (True = real) or None; ids: B x L.

        Returns:
            logits B x (L-1) x V and targets B x (L-1), ``-100`` where the target is PAD.
        """
        targets = ids[:, 1:].masked_fill(ids[:, 1:] == self.pad_id, IGNORE_INDEX)
        logits = self.logits(ids[:, :-1], self.project_memory(memory), memory_mask)
        return logits, targets

    def run(self, tower: TowerOutput, batch: Mapping[str, Any], tokenizer: Any) -> dict | None:
        """Teacher-forced outputs for one batch ({"logits", "targets"}); None when the batch
        has no `text_column` (nothing to learn to write)."""
        if self.text_column not in batch:
            return None
        ids, _ = tokenizer.encode(list(batch[self.text_column]), self.max_length)
        logits, targets = self(tower.tokens, tower.mask, ids.to(tower.tokens.device))
        return {"logits": logits, "targets": targets}

    def project_memory(self, memory: Tensor) -> Tensor:
        """Map encoder tokens (B x N x Dm) to decoder width (B x N x W)."""
        return self.memory_projection(memory)

    def logits(
        self,
        ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        caches: list[LayerCache] | None = None,
        offset: int = 0,
    ) -> Tensor:
        """Next-token logits (B x t x V) for every prefix of ``ids`` given projected memory.

        Args:
            caches: one ``LayerCache`` per block, filled / extended in place (decoding).
            offset: position of ``ids[:, 0]`` (the cached prefix length).
        """
        end = offset + ids.shape[1]
        if end > self.max_length:
            raise ValueError(
                f"decoder inputs have {end} positions but the decoder has max_length "
                f"{self.max_length}; raise the tokenizer's / decoder's max_length"
            )
        if offset == 0 and memory_mask is not None and not bool(memory_mask.any(dim=1).all()):
            raise ValueError("every sample needs at least one real memory token (memory_mask)")
        x = self.token_embedding(ids) + self.position_embedding[offset:end]
        x = self.embedding_dropout(x)
        for i, block in enumerate(self.blocks):
            x = block(x, memory, memory_mask, None if caches is None else caches[i])
        return self.output(self.final_norm(x))

    def sequence_log_prob(self, memory: Tensor, memory_mask: Tensor | None, ids: Tensor) -> Tensor:
        """Summed log-probability of ``ids[:, 1:]`` up to and including the first EOS.

        ``ids`` start with BOS; PAD positions are skipped. Call in eval mode for the
        deterministic score that the decoding strategies maximise.

        Returns:
            B float tensor.
        """
        logits, targets = self(memory, memory_mask, ids)
        logp = logits.float().log_softmax(dim=-1)
        real = targets != IGNORE_INDEX
        token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        is_eos = (targets == self.eos_id).long()
        before_or_at_eos = (is_eos.cumsum(dim=1) - is_eos) == 0
        return (token_logp * (real & before_or_at_eos)).sum(dim=1)

    @torch.no_grad()
    def generate(
        self,
        memory: Tensor,
        memory_mask: Tensor | None,
        *,
        method: Literal["greedy", "beam", "sample"] = "greedy",
        beam_size: int = 4,
        max_length: int = 48,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        length_penalty: float = 0.0,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> Tensor:
        """Decode text token ids from encoder tokens (the module is put in eval mode meanwhile).

        ``max_length`` counts generated tokens and is capped at the decoder's
        ``max_length - 1`` (BOS takes one position). See ``generation`` for the strategies;
        ``use_cache`` reuses keys / values of the prefix (same result, O(L) instead of O(L^2)
        token passes per sequence).

        Returns:
            LongTensor B x L': tokens after BOS, EOS included if produced, PAD afterwards.
        """
        max_length = min(max_length, self.max_length - 1)
        projected = self.project_memory(memory)
        special = {"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id}

        def full_step(ids: Tensor, mem: Tensor, mask: Tensor | None) -> Tensor:
            return self.logits(ids, mem, mask)[:, -1]

        cached = IncrementalStep(self)
        step = cached if use_cache else full_step
        reorder = cached.reorder if use_cache else None
        was_training = self.training
        self.eval()
        try:
            if method == "greedy":
                return generation.greedy_search(
                    step, projected, memory_mask, max_length=max_length, **special
                )
            if method == "beam":
                return generation.beam_search(
                    step,
                    projected,
                    memory_mask,
                    max_length=max_length,
                    beam_size=beam_size,
                    length_penalty=length_penalty,
                    reorder=reorder,
                    **special,
                )
            if method == "sample":
                return generation.sample(
                    step,
                    projected,
                    memory_mask,
                    max_length=max_length,
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    generator=generator,
                    **special,
                )
            raise ValueError(f"unknown generation method {method!r}; use greedy, beam or sample")
        finally:
            self.train(was_training)
