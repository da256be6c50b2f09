"""The root `Config`: the six sections and the checks that span several of them, and the
`doctor` section (`DoctorConfig`), which only the root holds."""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import Field, model_validator

from contrastkit.config.base import Section
from contrastkit.config.data import DataConfig
from contrastkit.config.eval import EvalConfig
from contrastkit.config.head_terms import RENAMED_HEAD_KEYS
from contrastkit.config.loss import LossConfig
from contrastkit.config.model import ModelConfig
from contrastkit.config.train import TrainConfig
from contrastkit.registry import LOSSES


class DoctorConfig(Section):
    """The doctor's data checks before training and its monitors during it."""

    enabled: bool = Field(
        True, description="run the doctor (monitors, findings.json, training_curves.png)"
    )
    check_data: bool = Field(True, description="run the data checks before training")
    fail_on: Literal["never", "warning", "error"] = Field(
        "never",
        description="stop before training when a data finding reaches this severity: never, warning or error",
    )
    every: int = Field(25, ge=1, description="steps between signal measurements")
    probe_size: int = Field(64, ge=2, description="fixed probe rows for drift")
    interference: bool = Field(
        True, description="measure the cosine between objectives' gradients on shared parameters"
    )
    near_duplicate_cosine: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="texts closer than this (embedding cosine) under different groups are reported as false negatives",
    )


class Config(Section):
    """A whole run: data, model, loss, train, eval and doctor sections."""

    name: str = Field(
        "run",
        description="run name: prefix of the default run folder runs/<name>-<time> and the report's title",
    )
    data: DataConfig = Field(
        ..., description="the data section: manifest, splits, batching, media sizes"
    )
    model: ModelConfig = Field(
        ..., description="the model section: towers, encoders, heads, tokenizer"
    )
    loss: LossConfig = Field(
        default_factory=LossConfig,
        description="the loss section: contrastive objectives, auxiliary terms, weight schedules",
    )
    train: TrainConfig = Field(
        default_factory=TrainConfig,
        description="the training section: optimizer, schedule, accumulation, phases, checkpoints",
    )
    eval: EvalConfig = Field(
        default_factory=EvalConfig,
        description="the evaluation section: splits, k values, probes, captioning",
    )
    doctor: DoctorConfig = Field(
        default_factory=DoctorConfig,
        description="the doctor section: data checks, live monitors, when to stop",
    )

    @model_validator(mode="after")
    def _cross_section(self) -> Config:
        towers = self.model.towers
        if not self.loss.objectives and len(towers) == 2:
            # Safe default: CLIP loss between the two towers.
            self.loss.objectives = [LOSSES.get("clip")(towers=list(towers))]
        for i, obj in enumerate(self.loss.objectives):
            for t in obj.towers:
                if t not in towers:
                    raise ValueError(
                        f"loss.objectives.{i}.towers names no tower {t!r}; towers: {sorted(towers)}"
                    )
            if len(obj.towers) == 2 and obj.towers[0] == obj.towers[1]:
                # One tower on both sides embeds each row twice alike: every positive pair
                # is a vector with itself, so the loss is met without learning anything.
                raise ValueError(
                    f"loss.objectives.{i}.towers: [{obj.towers[0]}, {obj.towers[1]}] pairs a "
                    "tower with itself; name two different towers"
                )
        for term in self.loss.heads:
            if term not in self.model.heads:
                raise ValueError(f"loss.{term} is set but model.{term} is not configured")
        self._rename_module_prefixes()
        self._check_contrastive_batch()
        weights = self.loss.term_weights()
        if not weights:
            raise ValueError("loss: no objective or auxiliary term is configured")
        known = set(weights)
        for key in self.loss.schedules:
            if key not in known:
                raise ValueError(f"loss.schedules.{key}: no such term; terms: {sorted(known)}")
        if sum(weights.values()) <= 0 and not self.train.phases:
            raise ValueError(f"loss weights sum to zero: {weights}")
        for i, phase in enumerate(self.train.phases):
            for key in phase.weights:
                if key not in known:
                    raise ValueError(
                        f"train.phases.{i}.weights.{key}: no such term; terms: {sorted(known)}"
                    )
            merged = {**weights, **phase.weights}
            if sum(merged.values()) <= 0:
                raise ValueError(f"train.phases.{i}: loss weights sum to zero: {merged}")
        return self

    def _check_contrastive_batch(self) -> None:
        """A contrastive objective compares each row with the other rows of its batch: one
        row has no negative, so the loss is 0 whatever the model does. Cached accumulation
        contrasts the whole step (`batch_size x accumulate` rows), naive accumulation each
        micro-batch of `batch_size` rows."""
        if not self.loss.objectives:
            return
        cached = self.train.accumulation == "cached"
        rows = self.data.batch_size * (self.train.accumulate if cached else 1)
        if rows >= 2:
            return
        objective = self.loss.objectives[0]
        raise ValueError(
            f"data.batch_size: {self.data.batch_size} row per contrastive batch gives the "
            f"{objective.type} objective {objective.name!r} no negatives (its loss is 0 "
            "whatever the model does); set data.batch_size to 2 or more (32 or more for a "
            "useful number of negatives), or train.accumulate > 1 with train.accumulation: cached"
        )

    def _rename_module_prefixes(self) -> None:
        """Module prefixes of renamed heads (`classifier` -> `classification`) in
        `train.freeze`, phase freezes and `train.lr_scale`, with a deprecation warning."""

        def renamed(prefix: str) -> str:
            for old, new in RENAMED_HEAD_KEYS.items():
                if new in self.model.heads and (prefix == old or prefix.startswith(old + ".")):
                    warnings.warn(
                        f"module prefix {prefix!r} is deprecated; the head is now named "
                        f"{new!r} (use {new + prefix[len(old) :]!r})",
                        FutureWarning,
                        stacklevel=2,
                    )
                    return new + prefix[len(old) :]
            return prefix

        train = self.train
        if any(renamed(p) != p for p in train.freeze):
            train.freeze = [renamed(p) for p in train.freeze]
        if any(renamed(p) != p for p in train.lr_scale):
            train.lr_scale = {renamed(p): v for p, v in train.lr_scale.items()}
        for phase in train.phases:
            if any(renamed(p) != p for p in phase.freeze):
                phase.freeze = [renamed(p) for p in phase.freeze]
            if any(renamed(p) != p for p in phase.unfreeze):
                phase.unfreeze = [renamed(p) for p in phase.unfreeze]
