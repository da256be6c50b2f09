"""The `model` section: towers (encoders, fusion, projection), tokenizer and heads."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializeAsAny, model_serializer, model_validator

from contrastkit.config.base import Section
from contrastkit.config.head_terms import _flat_heads, _heads_by_term
from contrastkit.registry import HEADS


class EncoderConfig(Section):
    """One encoder for one input stream. `options` are type-specific keyword arguments,
    checked against the encoder's signature when it is built."""

    type: str = Field(..., description="registered encoder name, e.g. cnn, vit, builtin_text")
    width: int = Field(
        128, ge=1, description="hidden size of a scratch encoder (pretrained ones use their own)"
    )
    depth: int = Field(2, ge=0, description="layers (transformers) or stride-2 stages (cnn)")
    heads: int = Field(4, ge=1, description="attention heads of a scratch transformer")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout probability inside the encoder"
    )
    pretrained: str | None = Field(None, description="local path to pretrained weights / model dir")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="type-specific options, checked against the encoder's signature (docs/models.md)",
    )


class FusionConfig(Section):
    """How a tower with several input streams merges them into one."""

    type: Literal["concat", "gated", "cross_attention"] = Field(
        "concat", description="concat, gated (learned per-stream gates) or cross_attention"
    )
    width: int | None = Field(None, ge=1, description="fused width (default: first stream's)")
    heads: int = Field(4, ge=1, description="attention heads of cross_attention fusion")


class ProjectionConfig(Section):
    """The map from a tower's pooled features to the shared embedding."""

    type: Literal["auto", "none", "linear", "mlp"] = Field(
        "auto",
        description="auto: none on an encoder whose output is already an embedding "
        "(sentence-transformers, CLIP/SigLIP heads), else linear; none: the pooled output",
    )
    init: Literal["auto", "identity", "random"] = Field(
        "auto",
        description="auto: identity on a pretrained encoder (step 0 = zero-shot), else random",
    )
    hidden: int | None = Field(
        None,
        ge=1,
        description="hidden width of an mlp projection (default: the encoder output width)",
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="dropout before the projection's output layer"
    )


class TowerConfig(Section):
    """One side of the contrastive model: input streams -> fusion -> projection."""

    streams: dict[str, EncoderConfig] = Field(
        default_factory=dict, description="input column -> encoder"
    )
    share: str | None = Field(
        None, description="reuse the encoders (and fusion) of this other tower; own projection"
    )
    fusion: FusionConfig | None = Field(
        None,
        description="how several streams of one tower are fused; null: concat (one stream: none)",
    )
    projection: ProjectionConfig = Field(
        default_factory=ProjectionConfig,
        description="the head mapping the tower's pooled output into the embedding space",
    )

    @model_validator(mode="after")
    def _streams_or_share(self) -> TowerConfig:
        if not self.streams and self.share is None:
            raise ValueError("a tower needs `streams` (input column -> encoder) or `share`")
        if self.streams and self.share is not None:
            raise ValueError("a tower has either its own `streams` or `share`, not both")
        return self


class TokenizerConfig(Section):
    """The tokenizer of the built-in text encoders and the captioning head."""

    type: Literal["builtin", "hf"] = Field(
        "builtin",
        description="builtin (vocabulary built from the train split's text) or hf (a local Hugging Face tokenizer, `path`)",
    )
    path: str | None = Field(None, description="local Hugging Face tokenizer dir (type: hf)")
    vocab_size: int = Field(2000, ge=16, description="builtin tokenizer vocabulary size")
    max_length: int = Field(48, ge=4, description="tokens per text (longer texts are cut)")


class HeadConfig(Section):
    """Base of every auxiliary head's config, keyed by its loss term's name.

    Each head's model lives in its file under `models/heads/` and is registered in
    `registry.HEADS` under the term name (`captioning`, `masked`, `classification`). In
    YAML a head is `model.<term>: {...}` and its loss term `loss.<term>: {weight: ...}`; the
    model output carries it as `output.heads[<term>]`. One name per head, everywhere.
    """

    tower: str = Field(..., description="tower the head reads")

    def build(self, width: int, tokenizer: Any, num_classes: int | None) -> Any:
        """The head module, reading a tower of `width` features; it has
        `run(tower_output, batch, tokenizer) -> dict[str, Tensor] | None`."""
        raise NotImplementedError(f"head {type(self).__name__} does not define build()")

    @staticmethod
    def loss(outputs: dict[str, Any], batch: dict[str, Any], term: Any) -> Any:
        """The term of one micro-batch as a `TermSum` (sum and count) from the head's
        outputs, the batch and the term's `AuxTermConfig`."""
        raise NotImplementedError("this head does not define loss()")


class ModelConfig(Section):
    """The towers, their encoders and projections, the tokenizer and the auxiliary heads."""

    embed_dim: int = Field(
        128, ge=2, description="size of the shared embedding space (projection output)"
    )
    towers: dict[str, TowerConfig] = Field(
        ..., description="tower name -> tower: the encoders of one side of the contrastive pair"
    )
    tokenizer: TokenizerConfig = Field(
        default_factory=TokenizerConfig,
        description="tokenizer of the builtin text encoders (pretrained ones bring their own)",
    )
    heads: dict[str, SerializeAsAny[HeadConfig]] = Field(
        default_factory=dict,
        description="auxiliary heads by loss-term name; written model.<term> in YAML",
    )
    init_from: str | None = Field(None, description="run dir or checkpoint to initialise from")
    siamese: bool = Field(
        True,
        description="towers whose one stream is the same pretrained encoder config share one "
        "encoder (as sentence-transformers does); false: each gets its own copy",
    )

    @model_validator(mode="after")
    def _towers_consistent(self) -> ModelConfig:
        for name, tower in self.towers.items():
            if tower.share is not None:
                if tower.share not in self.towers:
                    raise ValueError(
                        f"towers.{name}.share names no tower {tower.share!r}; "
                        f"towers: {sorted(self.towers)}"
                    )
                if self.towers[tower.share].share is not None:
                    raise ValueError(f"towers.{name}.share must name a tower with its own streams")
        for term, cfg in self.heads.items():
            if cfg.tower not in self.towers:
                raise ValueError(
                    f"{term}.tower names no tower {cfg.tower!r}; towers: {sorted(self.towers)}"
                )
        return self

    @model_validator(mode="before")
    @classmethod
    def _heads(cls, data: Any) -> Any:
        return _heads_by_term(cls, data, HEADS.get)

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        return _flat_heads(handler(self))
