"""The `eval` section: splits, tower pairs, metrics and caption generation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from contrastkit.config.base import Section


class GenerationConfig(Section):
    """How captions are decoded for evaluation and the report."""

    method: Literal["greedy", "beam", "sample"] = Field(
        "greedy", description="greedy, beam or sample"
    )
    beam_size: int = Field(4, ge=1, description="beams (method: beam)")
    max_length: int = Field(48, ge=1, description="tokens generated at most")
    temperature: float = Field(1.0, gt=0.0, description="softmax temperature (method: sample)")
    top_k: int | None = Field(
        None, ge=1, description="sample among the k most likely tokens; null: all"
    )
    top_p: float | None = Field(
        None, gt=0.0, le=1.0, description="nucleus sampling mass; null: off"
    )


class EvalConfig(Section):
    """Which splits and tower pairs are evaluated, and with which metrics."""

    splits: list[str] = Field(
        default_factory=lambda: ["val", "test"],
        description="splits evaluated at the end (and at the start with at_start)",
    )

    @field_validator("splits")
    @classmethod
    def _splits_lowercase(cls, v: list[str]) -> list[str]:
        """Split names are case-insensitive (the manifest's are lowercased too)."""
        return [s.strip().lower() for s in v]

    ks: list[int] = Field(
        default_factory=lambda: [1, 5, 10, 50], description="k values of R@k and NDCG@k"
    )

    @field_validator("ks")
    @classmethod
    def _ks_positive_distinct(cls, v: list[int]) -> list[int]:
        """R@0 and R@-5 mean nothing, and a repeated k would be one key written twice."""
        if not v:
            raise ValueError("give at least one k, e.g. [1, 5, 10]")
        bad = [k for k in v if k < 1]
        if bad:
            raise ValueError(f"every k must be 1 or more, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"each k once, got {v}")
        return v

    chunk_size: int = Field(1024, ge=1, description="query rows per similarity chunk")
    pairs: list[tuple[str, str]] | None = Field(
        None, description="(query tower, gallery tower); default: both directions of each objective"
    )
    captioning: GenerationConfig = Field(
        default_factory=GenerationConfig,
        description="generation settings for captioning metrics and the report's captions",
    )
    max_caption_samples: int = Field(
        200, ge=1, description="rows captioned for the captioning metrics (generation is slow)"
    )
    zero_shot_prompt: str | list[str] | None = Field(
        None,
        description="prompt(s) with {label}, e.g. 'a photo of the digit {label}'; several "
        "are averaged per class (a prompt ensemble)",
    )
    knn_k: int = Field(10, ge=1, description="neighbours of the leave-one-out k-NN probe")
    index: Literal["exact", "faiss"] = Field(
        "exact",
        description="top-k search backend for `contrastkit search`: exact (chunked matmul) "
        "or faiss (approximate IVF on large galleries; needs faiss-cpu)",
    )
    train_sample: int = Field(
        512,
        ge=0,
        description="most train groups (one row each, seeded) scored like val at every "
        "evaluation (train_sample/ keys; a tenth of val's groups, at least 32); 0: off",
    )
    linear_probe: bool = Field(
        False, description="fit a logistic-regression probe on frozen train embeddings"
    )
    at_start: bool | None = Field(
        None,
        description="evaluate before any training (metrics prefixed at_start/; with "
        "model.init_from also the random weights it replaces, at_random/); default: on "
        "when a tower has a pretrained encoder or model.init_from is set",
    )

    @field_validator("zero_shot_prompt")
    @classmethod
    def _prompt_has_label(cls, v: str | list[str] | None) -> str | list[str] | None:
        prompts = [v] if isinstance(v, str) else (v or [])
        if v is not None and not prompts:
            raise ValueError("give at least one prompt (or leave the key out)")
        for p in prompts:
            if "{label}" not in p:
                raise ValueError(f"prompt {p!r} has no '{{label}}' placeholder")
        return v
