"""The `data` section: manifest or shards, splits, batching, samplers and media sizes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from contrastkit.config.base import Section


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
