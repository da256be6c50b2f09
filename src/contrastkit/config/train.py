"""The `train` section: optimiser, schedule, precision, phases, checkpoints, loggers, LoRA."""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from contrastkit.config.base import Section


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
    # 15 minutes bounds what a kill without warning (SIGKILL, node failure) loses in a long
    # epoch at about one checkpoint-write per quarter hour: seconds of I/O for most models,
    # under 1% of the time. SIGTERM/SIGUSR1 lose nothing (train/preemption.py).
    every_minutes: float | None = Field(
        15.0,
        gt=0.0,
        description="also checkpoint when this many minutes passed since the last (null: off)",
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
