"""Captioning decoder: a small transformer that writes the text from an encoder's tokens.

The auxiliary captioning objective of CoCa (Yu et al. 2022, "CoCa: Contrastive Captioners
are Image-Text Foundation Models") and LocCa (Wan et al. 2024, "LocCa: Visual Pretraining
with Location-aware Captioners"): a decoder cross-attends to the encoder tokens and is
trained with teacher forcing, so the encoder must keep the details a caption needs
(numbers, locations) that a pooled contrastive embedding may drop.

Term `captioning`: YAML `model.captioning` (the head) and `loss.captioning` (its weight),
outputs `output.heads["captioning"]` = {"logits", "targets"}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import AuxTermConfig, HeadConfig
from contrastkit.models.heads import generation
from contrastkit.models.heads.kv_cache import IncrementalStep, LayerCache
from contrastkit.models.outputs import TermSum, TowerOutput
from contrastkit.registry import HEADS

IGNORE_INDEX = -100  # targets with this id are skipped by F.cross_entropy
DEFAULT_TEXT_LENGTH = 48  # decoder positions when the tokenizer does not say


class Attention(nn.Module):
    """Multi-head attention; keys / values are computed apart so that they can be cached."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        if width % heads != 0:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``context`` (B x N x W), each B x heads x N x W/heads."""
        batch, length, _ = context.shape
        k, v = self.key_value(context).view(batch, length, 2, self.heads, -1).unbind(2)
        return k.transpose(1, 2), v.transpose(1, 2)

    def forward(
        self, x: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, causal: bool = False
    ) -> Tensor:
        """Attend from ``x`` (B x L x W) to keys / values from ``keys_values``.

        Args:
            mask: B x N bool, True where a context token may be attended to.
            causal: position i attends only to key positions <= i (needs L == N).
        """
        batch, length, width = x.shape
        q = self.query(x).view(batch, length, self.heads, -1).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=None if mask is None else mask[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal,
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class DecoderBlock(nn.Module):
    """Pre-LN block: causal self-attention, cross-attention to the memory, MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attention = Attention(width, heads, dropout)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attention = Attention(width, heads, dropout)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """Run the block on ``x``; with a non-empty ``cache``, ``x`` is the one next position."""
        h = self.norm_self(x)
        k, v = self.self_attention.keys_values(h)
        causal = True
        if cache is not None and cache.self_k is not None and cache.self_v is not None:
            if x.shape[1] != 1:
                raise ValueError("a cached decoder step takes exactly one new position")
            k, v = torch.cat([cache.self_k, k], dim=2), torch.cat([cache.self_v, v], dim=2)
            causal = False  # the single new query may see every cached position
        if cache is not None:
            cache.self_k, cache.self_v = k, v
        x = x + self.drop(self.self_attention(h, k, v, causal=causal))
        if cache is not None and cache.cross_k is not None:
            cross_k, cross_v = cache.cross_k, cache.cross_v
        else:
            cross_k, cross_v = self.cross_attention.keys_values(memory)
            if cache is not None:
                cache.cross_k, cache.cross_v = cross_k, cross_v
        x = x + self.drop(
            self.cross_attention(self.norm_cross(x), cross_k, cross_v, mask=memory_mask)
        )
        return x + self.drop(self.mlp(self.norm_mlp(x)))


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


def captioning_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> TermSum:
    """Teacher-forced next-token cross-entropy summed over real (non-padded) targets.

    Shape:
        logits: B x L x V; targets: B x L (−100 where padded).
    """
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        label_smoothing=label_smoothing,
        reduction="sum",
    )
    return TermSum.over(total, targets != IGNORE_INDEX)


@HEADS.register("captioning")
class CaptioningHeadConfig(HeadConfig):
    """`model.captioning`: a decoder that writes `text_column` from `tower`'s tokens."""

    tower: str = Field(..., description="tower whose tokens the decoder attends to")
    width: int = Field(128, ge=8, description="decoder width")
    depth: int = Field(2, ge=1, description="decoder blocks")
    heads: int = Field(4, ge=1, description="attention heads; must divide width")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in the decoder")
    text_column: str = Field("text", description="batch column the decoder learns to write")

    @override
    def build(self, width: int, tokenizer: Any, num_classes: int | None) -> CaptioningDecoder:
        return CaptioningDecoder(
            vocab_size=tokenizer.vocab_size,
            memory_dim=width,
            width=self.width,
            depth=self.depth,
            heads=self.heads,
            dropout=self.dropout,
            max_length=int(getattr(tokenizer, "max_length", DEFAULT_TEXT_LENGTH)),
            pad_id=tokenizer.pad_id,
            bos_id=tokenizer.bos_id,
            eos_id=tokenizer.eos_id,
            text_column=self.text_column,
        )

    @staticmethod
    @override
    def loss(outputs: dict, batch: Mapping[str, Any], term: AuxTermConfig) -> TermSum:
        return captioning_loss(outputs["logits"], outputs["targets"], term.label_smoothing)
