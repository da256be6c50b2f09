"""The `loss` section: contrastive objectives, auxiliary terms, distillation, schedules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from contrastkit.config.base import Section
from contrastkit.config.head_terms import _flat_heads, _heads_by_term
from contrastkit.errors import ConfigError
from contrastkit.registry import HEADS, LOSSES


class ObjectiveConfig(Section):
    """Base of every objective's config.

    Each objective's model lives beside its loss (`losses/clip.py`: `ClipObjective`, ...)
    and is registered in `registry.LOSSES` under its `type`; `build()` makes the loss
    module. `loss.objectives` entries are validated by the model registered for their
    `type`, so an objective registered outside the package is selectable from YAML.
    """

    type: str = Field(
        ...,
        description="objective type: clip, siglip, triplet (or one registered in registry.LOSSES)",
    )
    name: str = Field("contrastive", description="term name in logs, weights, schedules and phases")
    towers: list[str] = Field(
        ...,
        min_length=1,
        max_length=2,
        description="the two towers it contrasts (one tower: within-tower, e.g. triplet)",
    )
    weight: float = Field(1.0, ge=0.0, description="weight of this term in the summed loss")

    def build(self) -> Any:
        """The loss module: forward(a, b | None, group_ids, attributes=None, labels=None)
        -> ContrastiveResult."""
        raise NotImplementedError(f"objective {self.type!r} does not define build()")


def _objective(i: int, item: Any) -> ObjectiveConfig:
    """Validate one `loss.objectives` entry with the config model registered for its type."""
    if isinstance(item, ObjectiveConfig):
        return item
    if not isinstance(item, dict) or "type" not in item:
        raise ValueError(f"{i}.type: every objective needs a `type`; registered: {LOSSES.names()}")
    try:
        model = LOSSES.get(item["type"])
    except ConfigError as err:
        raise ValueError(f"{i}.type: {err}") from None
    try:
        return model.model_validate(item)
    except ValidationError as err:  # re-raised under loss.objectives.<i>.<key>
        details = [
            InitErrorDetails(
                type=e["type"], loc=(i, *e["loc"]), input=e["input"], ctx=e.get("ctx", {})
            )
            for e in err.errors()
        ]
        raise ValidationError.from_exception_data(err.title, details) from None


class AuxTermConfig(Section):
    """An auxiliary head's loss term (`loss.<term>`)."""

    weight: float = Field(0.5, ge=0.0, description="base weight of the term in the loss")
    label_smoothing: float = Field(
        0.0, ge=0.0, lt=1.0, description="cross-entropy label smoothing (captioning, classes)"
    )


class DistillationConfig(Section):
    """`loss.distillation`: match a teacher's (EMA or another run's) similarity distributions."""

    weight: float = Field(0.5, ge=0.0, description="weight of the distillation term")
    source: Literal["ema", "teacher"] = Field(
        "ema", description="ema (an exponential moving average of the model) or teacher (a run dir)"
    )
    teacher: str | None = Field(None, description="run dir of a frozen teacher (source: teacher)")
    ema_decay: float = Field(0.999, gt=0.0, lt=1.0, description="EMA decay per step (source: ema)")
    temperature: float = Field(
        0.07, gt=0.0, description="temperature of the teacher and student similarity distributions"
    )

    @model_validator(mode="after")
    def _teacher(self) -> DistillationConfig:
        if self.source == "teacher" and not self.teacher:
            raise ValueError("distillation.source: teacher needs distillation.teacher (a run dir)")
        return self


class WeightSchedule(Section):
    """A term's weight over training steps (`loss.schedules.<term>`)."""

    kind: Literal["constant", "linear", "cosine", "step"] = Field(
        "constant", description="shape of the schedule: constant, linear, cosine or step"
    )
    start: float = Field(..., ge=0.0, description="weight at step 0")
    end: float | None = Field(
        None, ge=0.0, description="weight after `steps` steps (linear, cosine); null: start"
    )
    steps: int | None = Field(None, ge=1, description="steps to go from start to end")
    milestones: list[int] = Field(
        default_factory=list, description="kind: step; steps where start*gamma^i"
    )
    gamma: float = Field(0.1, ge=0.0, description="kind: step; factor applied at each milestone")


class LossConfig(Section):
    """The contrastive objectives, the auxiliary head terms, distillation and weight schedules."""

    objectives: list[SerializeAsAny[ObjectiveConfig]] = Field(
        default_factory=list,
        description="contrastive objectives (clip, siglip, triplet), each between two towers",
    )
    heads: dict[str, AuxTermConfig] = Field(
        default_factory=dict,
        description="auxiliary head terms by name (one per model head); written loss.<term>",
    )
    distillation: DistillationConfig | None = Field(
        None, description="distillation from an EMA or a frozen teacher run; null: off"
    )
    schedules: dict[str, WeightSchedule] = Field(
        default_factory=dict, description="term name -> weight schedule over steps"
    )

    @model_validator(mode="before")
    @classmethod
    def _heads(cls, data: Any) -> Any:
        return _heads_by_term(cls, data, lambda term: AuxTermConfig)

    @model_serializer(mode="wrap")
    def _flat(self, handler: Any) -> dict[str, Any]:
        return _flat_heads(handler(self))

    def auxiliary_terms(self) -> list[str]:
        """Configured auxiliary terms: the head terms, then distillation."""
        return list(self.heads) + (["distillation"] if self.distillation is not None else [])

    @field_validator("objectives", mode="before")
    @classmethod
    def _registered_types(cls, objectives: Any) -> Any:
        if not isinstance(objectives, list):
            return objectives
        return [_objective(i, item) for i, item in enumerate(objectives)]

    @field_validator("objectives")
    @classmethod
    def _unique_names(cls, objectives: list) -> list:
        names = [o.name for o in objectives]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"objective names must be unique; repeated: {sorted(dup)}")
        clash = set(names) & ({"distillation", *HEADS.names()})
        if clash:
            raise ValueError(f"objective names {sorted(clash)} clash with auxiliary term names")
        return objectives

    def term_weights(self) -> dict[str, float]:
        """Initial weight of every active term, by term name."""
        weights = {o.name: o.weight for o in self.objectives}
        weights.update({term: cfg.weight for term, cfg in self.heads.items()})
        if self.distillation is not None:
            weights["distillation"] = self.distillation.weight
        return weights
