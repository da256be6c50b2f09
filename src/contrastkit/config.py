"""Typed run configuration: defaults -> YAML file -> dotted `-o key=value` overrides.

Only the factories (`build_model`, `build_loss`, `build_loaders`, the engine set-up) read
these objects; components below them take plain typed arguments.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from contrastkit.errors import ConfigError
from contrastkit.registry import HEADS, LOSSES


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on set."""

    # allow_inf_nan=False: no float setting means anything at inf or NaN (an lr of inf
    # trains on NaN and fails far from the cause), so every float key rejects them.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- data


class ImageOptions(Section):
    """`data.image`: the size and channels every image is read at."""

    size: int = Field(32, ge=4, description="images are resized to size x size")
    channels: Literal[1, 3] = Field(1, description="1 = grey, 3 = RGB (pictures are converted)")


class VideoOptions(Section):
    """`data.video`: frames, size and channels every clip is read at."""

    frames: int = Field(8, ge=1, description="frames sampled uniformly per clip")
    size: int = Field(32, ge=4, description="frames are resized to size x size")
    channels: Literal[1, 3] = Field(1, description="1 = grey, 3 = RGB")
    max_views: int = Field(1, ge=1, description="videos per study; >1 enables multi-view")


class SequenceOptions(Section):
    """`data.sequence`: the length every sequence is padded or cut to."""

    max_length: int = Field(64, ge=1, description="frames kept (longer sequences are cropped)")


class SamplerConfig(Section):
    """`data.sampler`: random batches, or batches of whole groups."""

    type: Literal["random", "groups"] = Field(
        "random",
        description="random: shuffled rows; groups: K groups x M members per batch (in-batch positives)",
    )
    groups_per_batch: int | None = Field(None, ge=1, description="K in K groups x M members")
    members_per_group: int = Field(2, ge=1, description="M in K groups x M members")


class HardNegativesConfig(Section):
    """Mined hard negatives (see data/hard_negatives.py): each training query's top-k rows of
    other groups under `mine_with`, minus likely false negatives, placed in its batch."""

    mine_with: str = Field(
        "pretrained", description="pretrained (the model at step 0) or a RUN_DIR to mine with"
    )
    k: int = Field(3, ge=1, description="negatives kept per query row")
    skip_top: int = Field(0, ge=0, description="best other-group candidates skipped first")
    max_score_ratio: float = Field(
        0.95, gt=0.0, description="drop candidates scoring >= this x the row's positive score"
    )
    every_epochs: int | None = Field(None, ge=1, description="re-mine with the current model")
    objective: str | None = Field(None, description="objective whose towers mine (default: first)")


class DataConfig(Section):
    """Where the rows come from (manifest or shards), the splits, and how they are batched and read."""

    manifest: str = Field(
        "", description="manifest path (.jsonl/.csv/.parquet) or builtin:NAME (or use shards)"
    )
    shards: str | dict[str, str | list[str]] | None = Field(
        None,
        description="stream WebDataset shards: the folder `contrastkit shard` wrote, a brace "
        "pattern (train split), or split -> pattern or list of paths",
    )
    shuffle_shards: int = Field(
        4, ge=1, description="shards whose samples a stream shuffles together (its buffer)"
    )
    root: str | None = Field(None, description="base folder for relative media paths")
    cache_dir: str | None = Field(None, description="where builtin datasets are generated")
    builtin_options: dict[str, Any] = Field(
        default_factory=dict,
        description="options passed to the builtin dataset generator (builtin:NAME only)",
    )
    train_split: str = Field("train", description="split trained on")
    val_split: str | None = Field(
        "val",
        description="split evaluated after each epoch (picks the best checkpoint); null: none",
    )
    test_split: str | None = Field("test", description="held-out split evaluated at the end")
    allow_outside_root: bool = Field(
        True,
        description="false: media paths must stay inside the data root (after ~, .. and "
        "symlinks are resolved); for shared manifests",
    )
    batch_size: int = Field(
        64,
        ge=1,
        description="rows per micro-batch and process (the global batch is x train.accumulate x processes)",
    )
    eval_batch_size: int = Field(
        256, ge=1, description="rows per batch when embedding for evaluation"
    )
    num_workers: int | Literal["auto"] = Field(
        0, description="loader worker processes; auto = cores - 1, at most 8"
    )
    pin_memory: bool | Literal["auto"] = Field("auto", description="auto = on when CUDA exists")
    persistent_workers: bool = Field(True, description="keep workers alive between epochs")
    drop_last: bool = Field(
        True,
        description="drop the last incomplete training batch (keeps the in-batch negative count constant)",
    )
    sampler: SamplerConfig = Field(
        default_factory=SamplerConfig, description="how training rows are grouped into batches"
    )
    on_error: Literal["raise", "skip"] = Field(
        "raise",
        description="a bad manifest row or unreadable file: raise (stop, naming file/row/column) or skip (drop and report)",
    )
    max_rows: int | None = Field(None, ge=1, description="use only the first N rows per split")
    image: ImageOptions = Field(
        default_factory=ImageOptions, description="how image files are read"
    )
    video: VideoOptions = Field(default_factory=VideoOptions, description="how videos are read")
    sequence: SequenceOptions = Field(
        default_factory=SequenceOptions, description="how keypoint / sequence arrays are read"
    )
    hard_negatives: HardNegativesConfig | None = Field(
        None, description="mined hard negatives added to each training batch; null: off"
    )

    @field_validator("train_split", "val_split", "test_split")
    @classmethod
    def _split_lowercase(cls, v: str | None) -> str | None:
        """Split names are case-insensitive (the manifest's are lowercased too)."""
        return None if v is None else v.strip().lower()

    @model_validator(mode="after")
    def _groups_fit_batch(self) -> DataConfig:
        if not self.manifest and self.shards is None:
            raise ValueError("data needs a `manifest` or `shards`")
        if isinstance(self.num_workers, int) and self.num_workers < 0:
            raise ValueError("data.num_workers must be >= 0 or auto")
        s = self.sampler
        if self.hard_negatives is not None and s.type != "random":
            raise ValueError(
                "data.hard_negatives builds its own batches; use data.sampler.type: random"
            )
        k = s.groups_per_batch
        if s.type == "groups" and k is not None and k * s.members_per_group != self.batch_size:
            raise ValueError(
                f"sampler.groups_per_batch * sampler.members_per_group "
                f"({k} * {s.members_per_group}) must equal batch_size ({self.batch_size})"
            )
        return self


# --------------------------------------------------------------------------- model


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


# Keys renamed so that a head has one name (its term's) in model, loss and outputs.
RENAMED_HEAD_KEYS = {"classifier": "classification"}


def _validated(where: tuple, model: type[BaseModel], item: Any) -> Any:
    """`model.model_validate(item)`, errors re-raised at `where` + their own location."""
    try:
        return model.model_validate(item)
    except ValidationError as err:
        details = [
            InitErrorDetails(
                type=e["type"], loc=(*where, *e["loc"]), input=e["input"], ctx=e.get("ctx", {})
            )
            for e in err.errors()
        ]
        raise ValidationError.from_exception_data(err.title, details) from None


def _heads_by_term(cls: type[BaseModel], data: Any, entry: Any) -> Any:
    """Move the registered head terms of a section's mapping (`model.<term>` or
    `loss.<term>`) into its `heads` dict, each validated by `entry(term)`."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    section = "model" if "towers" in cls.model_fields else "loss"
    for old, new in RENAMED_HEAD_KEYS.items():
        if old in data and data[old] is None:
            del data[old]  # `classifier: null` in a config written before the rename
        if old in data and section == "model":
            if new in data:
                raise ValueError(f"model.{old} and model.{new} are both set; keep model.{new}")
            warnings.warn(
                f"model.{old} is deprecated; use model.{new} (the head is named after its "
                f"loss term, loss.{new})",
                FutureWarning,
                stacklevel=2,
            )
            data[new] = data.pop(old)
    heads = dict(data.pop("heads", None) or {})
    for key in [k for k in data if k not in cls.model_fields and k in HEADS]:
        value = data.pop(key)
        if value is not None:  # `captioning: null` (older run dirs' config.yaml) = no head
            heads[key] = value
    data["heads"] = {
        term: item if isinstance(item, BaseModel) else _validated((term,), entry(term), item)
        for term, item in heads.items()
    }
    return data


def _flat_heads(out: dict[str, Any]) -> dict[str, Any]:
    """Serialised section with its heads back at `<section>.<term>` (as written in YAML)."""
    heads = out.pop("heads", None) or {}
    out.update(heads)
    return out


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


# --------------------------------------------------------------------------- loss


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


# --------------------------------------------------------------------------- train


class Phase(Section):
    """A stretch of training with its own frozen modules and term weights.

    The last phase may leave `until_epoch`/`until_step` unset (it runs to the end).
    """

    name: str | None = Field(None, description="name shown in logs and findings")
    until_epoch: int | None = Field(None, ge=1, description="the phase ends after this epoch")
    until_step: int | None = Field(None, ge=1, description="the phase ends after this step")
    freeze: list[str] = Field(default_factory=list, description="module-name prefixes")
    unfreeze: list[str] = Field(
        default_factory=list,
        description="module-name prefixes trainable in this phase (overrides train.freeze)",
    )
    weights: dict[str, float] = Field(
        default_factory=dict,
        description="term name -> weight during this phase (0 switches a term off)",
    )
    lr_scale: float = Field(1.0, gt=0.0, description="learning-rate multiplier during this phase")

    @model_validator(mode="after")
    def _one_bound(self) -> Phase:
        if self.until_epoch is not None and self.until_step is not None:
            raise ValueError("a phase ends at until_epoch or until_step, not both")
        return self


class CheckpointConfig(Section):
    """`train.checkpoint`: how often to checkpoint and how many to keep."""

    every_steps: int | None = Field(None, ge=1, description="also checkpoint every N steps")
    keep_last: int = Field(2, ge=1, description="checkpoints kept besides the best")
    every_minutes: float | None = Field(
        None, gt=0.0, description="also checkpoint when this many minutes passed since the last"
    )


class EarlyStoppingConfig(Section):
    """`train.early_stopping`: stop after evaluations without improvement of the selection metric."""

    patience: int = Field(5, ge=1, description="evaluations without improvement")
    min_delta: float = Field(
        0.0, ge=0.0, description="smallest change that counts as an improvement"
    )


class LoggersConfig(Section):
    """`train.loggers`: the metric sinks besides metrics.jsonl."""

    tensorboard: bool = Field(True, description="write TensorBoard events into the run dir")
    wandb: bool = Field(False, description="log to Weights & Biases")
    wandb_project: str = Field("contrastkit", description="W&B project name")
    wandb_mode: Literal["offline", "online", "disabled"] = Field(
        "offline", description="W&B mode (offline: files under the run dir, synced later)"
    )
    mlflow: bool = Field(False, description="log to MLflow (files under the run dir)")
    mlflow_tracking_uri: str | None = Field(None, description="default: sqlite in the run dir")


RENAMED_TRAIN_KEYS = {"monitor": "select_metric", "monitor_mode": "select_mode"}


class LoraConfig(Section):
    """Low-rank adapters (Hu et al. 2021) on every Hugging Face tower, through `peft`; the
    pretrained weights stay frozen and out of the checkpoints."""

    targets: list[str] = Field(
        default_factory=lambda: ["query", "value"],
        min_length=1,
        description="module names to adapt (BERT/MiniLM/ViT: query, key, value, dense; "
        "CLIP/SigLIP: q_proj, k_proj, v_proj, out_proj)",
    )
    r: int = Field(8, ge=1, description="adapter rank")
    alpha: float = Field(16.0, gt=0.0, description="scaling numerator: updates are alpha / r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapters' input")


class TrainConfig(Section):
    """Optimisation, schedule, precision, phases, checkpoints and logging of a run."""

    seed: int = Field(
        0, description="seed of model init, sampling and augmentation (runs are reproducible)"
    )
    epochs: int = Field(10, ge=1, description="passes over the train split")
    max_steps: int | None = Field(
        None,
        ge=1,
        description="stop after this many optimizer steps (before `epochs` ends); null: no limit",
    )
    lr: float = Field(1e-3, gt=0.0, description="peak learning rate of AdamW")
    min_lr_ratio: float = Field(
        0.0, ge=0.0, le=1.0, description="final lr as a fraction of lr (cosine / linear decay)"
    )
    weight_decay: float = Field(
        0.05, ge=0.0, description="AdamW weight decay (never on norms, biases, temperature)"
    )
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas")
    eps: float = Field(1e-6, gt=0.0, description="AdamW epsilon")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="decay after warm-up: cosine, linear or constant"
    )
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps (0: use warmup_fraction)")
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="used when warmup_steps is 0")
    grad_clip: float | None = Field(
        1.0, gt=0.0, description="clip the global gradient norm at this value; null: no clipping"
    )
    accumulate: int = Field(
        1,
        ge=1,
        description="micro-batches per optimizer step (global batch = batch_size x accumulate x processes)",
    )
    accumulation: Literal["cached", "naive"] = Field(
        "cached",
        description="cached: GradCache, the negatives span the whole global batch; naive: summed micro-batch losses (no extra negatives)",
    )
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none", description="mixed precision: none, bf16 (CPU or GPU) or fp16 (CUDA only)"
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$",
        description="auto | cpu | cuda | cuda:N | mps",
    )
    lr_scale: dict[str, float] = Field(
        default_factory=dict, description="module-name prefix -> lr multiplier"
    )
    new_params_lr_scale: float | None = Field(
        None,
        gt=0.0,
        description="lr multiplier of new parameters (temperature/bias, projections on "
        "pretrained encoders); default max(1, 1e-3 / lr)",
    )
    lora: LoraConfig | None = Field(None, description="LoRA adapters on Hugging Face towers")
    layer_decay: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="layer-wise lr decay on pretrained transformer towers: block i of L "
        "trains at lr x decay^(L - i), the embeddings at decay^(L + 1)",
    )
    freeze: list[str] = Field(default_factory=list, description="prefixes frozen for the whole run")
    feature_cache: bool = Field(
        True,
        description="a tower whose encoder is frozen for the whole run (LiT) is encoded once "
        "per input and read from a disk cache afterwards (see models/feature_cache.py)",
    )
    feature_cache_dir: str | None = Field(
        None, description="where frozen-tower features are cached (default: RUN_DIR/feature_cache)"
    )
    phases: list[Phase] = Field(
        default_factory=list,
        description="stretches of training with their own frozen modules and term weights (e.g. warm up the heads first)",
    )
    log_every: int = Field(10, ge=1, description="write metrics.jsonl (and loggers) every N steps")
    eval_every_epochs: int = Field(1, ge=1, description="evaluate the val split every N epochs")
    select_metric: str | None = Field(
        None,
        description="metric key that picks the best checkpoint and drives early stopping, "
        "e.g. val/text_to_image/R@1 (default: R@1 of the first evaluated pair, see pairing.py)",
    )
    select_mode: Literal["max", "min"] = Field(
        "max", description="whether a larger (max) or smaller (min) select_metric is better"
    )
    early_stopping: EarlyStoppingConfig | None = Field(
        None, description="stop when the selected metric stops improving; null: off"
    )
    checkpoint: CheckpointConfig = Field(
        default_factory=CheckpointConfig,
        description="when checkpoints are written and how many are kept",
    )
    loggers: LoggersConfig = Field(
        default_factory=LoggersConfig, description="extra loggers besides metrics.jsonl"
    )
    progress: Literal["auto", "rich", "plain", "none"] = Field(
        "auto", description="progress display: auto, rich, plain or none"
    )
    compile: bool = Field(False, description="torch.compile the model")
    max_bad_steps: int = Field(
        10, ge=1, description="consecutive non-finite steps (skipped) before the run stops"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        """`train.monitor` / `monitor_mode` were renamed (the doctor's callbacks are the
        monitors); the old keys still work, with a warning."""
        if isinstance(data, dict):
            for old, new in RENAMED_TRAIN_KEYS.items():
                if old in data:
                    if new in data:
                        raise ValueError(f"give train.{new} only (train.{old} is its old name)")
                    warnings.warn(
                        f"train.{old} is deprecated; use train.{new}", FutureWarning, stacklevel=2
                    )
                    data = {**data, new: data[old]}
                    del data[old]
        return data

    @property
    def monitor(self) -> str | None:
        """Deprecated name of `select_metric`."""
        return self.select_metric

    @property
    def monitor_mode(self) -> str:
        """Deprecated name of `select_mode`."""
        return self.select_mode

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"Adam betas must each be in [0, 1), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _phases_ordered(self) -> TrainConfig:
        for i, p in enumerate(self.phases[:-1]):
            if p.until_epoch is None and p.until_step is None:
                raise ValueError(f"phases.{i}: only the last phase may omit until_epoch/until_step")
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("amp: fp16 needs a CUDA device; use amp: bf16 on CPU")
        for prefix, scale in self.lr_scale.items():
            if scale < 0:
                raise ValueError(f"lr_scale.{prefix} must be >= 0, got {scale}")
        return self


# --------------------------------------------------------------------------- eval / doctor


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
        for term in self.loss.heads:
            if term not in self.model.heads:
                raise ValueError(f"loss.{term} is set but model.{term} is not configured")
        self._rename_module_prefixes()
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


# --------------------------------------------------------------------------- loading


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_override(data: dict, override: str) -> None:
    """Apply one `a.b.c=value` override in place (list items by index: `a.0.b=1`)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    path, _, raw = override.partition("=")
    keys = path.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {override!r} has an empty key")
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"override {override!r}: {where} is not an index of the list")
            node = node[int(key)]
        else:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {override!r}: {where} is a value, not a section")
    last = keys[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise ConfigError(f"override {override!r}: {last} is not an index of the list")
        node[int(last)] = _parse_value(raw)
    else:
        node[last] = _parse_value(raw)


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; `contrastkit config show` lists valid keys)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        value = e.get("input")
        shown = (
            f" (got {value!r})"
            if e["type"] not in ("missing",) and not isinstance(value, dict)
            else ""
        )
        lines.append(f"  {loc or '<root>'}: {msg}{shown}")
    return f"invalid config {source}:\n" + "\n".join(lines)


def _invalid_unicode(node: Any, where: str = "") -> str | None:
    """Key path of the first string (key or value) with a lone surrogate, or None; such
    text cannot be written to config.yaml, a path or the terminal."""
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:
            return where
        return None
    if isinstance(node, dict):
        items: Any = node.items()
    else:
        items = enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        here = f"{where}.{key}" if where else str(key)
        found = _invalid_unicode(key, here) if isinstance(key, str) else None
        found = found if found is not None else _invalid_unicode(value, here)
        if found is not None:
            return found
    return None


def config_from_dict(
    data: dict, source: str = "<dict>", overrides: list[str] | None = None
) -> Config:
    """Validate a plain mapping (after applying overrides) into a `Config`."""
    data = yaml.safe_load(yaml.safe_dump(data, sort_keys=False))  # deep copy, keeps key order
    for ov in overrides or []:
        apply_override(data, ov)
    bad = _invalid_unicode(data)
    if bad is not None:
        raise ConfigError(
            f"invalid config {source}:\n  {bad or '<root>'}: text is not valid Unicode "
            "(a lone surrogate such as \\ud800)"
        )
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file, apply `key=value` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"config file {path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at byte "
            f"offset {err.start}, line {line}); save it as UTF-8"
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    cfg = config_from_dict(data, source=str(path), overrides=overrides)
    # Relative manifest paths are relative to the config file.
    m = cfg.data.manifest
    if not m.startswith("builtin:") and not Path(m).is_absolute():
        candidate = path.parent / m
        try:
            relative = candidate.exists() or not Path(m).exists()
        except OSError:  # a name too long for the filesystem: the data loader reports it
            relative = True
        if relative:
            cfg.data.manifest = str(candidate)
    return cfg


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML (what is saved to `config.yaml` in the run directory)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
