"""Typed run configuration: defaults -> YAML file -> dotted `-o key=value` overrides.

Only the factories (`build_model`, `build_loss`, `build_loaders`, the engine set-up) read
these objects; components below them take plain typed arguments.

One module per section (`data`, `model`, `loss`, `train`, `eval`, `doctor`), the root
`Config` in `root`, reading and writing it in `loading`; every name is imported from here.
"""

from contrastkit.config.base import Section
from contrastkit.config.data import (
    DataConfig,
    HardNegativesConfig,
    ImageOptions,
    SamplerConfig,
    SequenceOptions,
    VideoOptions,
)
from contrastkit.config.eval import EvalConfig, GenerationConfig
from contrastkit.config.head_terms import RENAMED_HEAD_KEYS
from contrastkit.config.loading import apply_override, config_from_dict, dump_config, load_config
from contrastkit.config.loss import (
    AuxTermConfig,
    DistillationConfig,
    LossConfig,
    ObjectiveConfig,
    WeightSchedule,
)
from contrastkit.config.model import (
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    ModelConfig,
    ProjectionConfig,
    TokenizerConfig,
    TowerConfig,
)
from contrastkit.config.root import Config, DoctorConfig
from contrastkit.config.train import (
    RENAMED_TRAIN_KEYS,
    CheckpointConfig,
    EarlyStoppingConfig,
    LoggersConfig,
    LoraConfig,
    Phase,
    TrainConfig,
)

__all__ = [
    "RENAMED_HEAD_KEYS",
    "RENAMED_TRAIN_KEYS",
    "AuxTermConfig",
    "CheckpointConfig",
    "Config",
    "DataConfig",
    "DistillationConfig",
    "DoctorConfig",
    "EarlyStoppingConfig",
    "EncoderConfig",
    "EvalConfig",
    "FusionConfig",
    "GenerationConfig",
    "HardNegativesConfig",
    "HeadConfig",
    "ImageOptions",
    "LoggersConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "Phase",
    "ProjectionConfig",
    "SamplerConfig",
    "Section",
    "SequenceOptions",
    "TokenizerConfig",
    "TowerConfig",
    "TrainConfig",
    "VideoOptions",
    "WeightSchedule",
    "apply_override",
    "config_from_dict",
    "dump_config",
    "load_config",
]
