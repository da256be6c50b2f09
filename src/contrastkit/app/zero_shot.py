"""What the model scores before any training: the baseline every run is compared with.

`at_start_metrics` evaluates the freshly built model (pretrained weights, projections at
their identity start) on every eval split before the first step, and records the numbers
with the prefix `at_start/` (`at_start/val/text_to_image/R@1`) in `metrics.jsonl` (step 0),
`at_start.json` and `summary.json`. The doctor's `worse_than_start` finding compares the
final validation metric with them. With `model.init_from`, a copy of the model with the
random weights it had before the init loaded is evaluated on the validation split too
(prefix `at_random/`): `init_worse_than_random` tells when the init is the problem. `evaluate_config` is `contrastkit eval CONFIG.yaml`:
the same evaluation of the untrained model without a run directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from contrastkit.config import Config
from contrastkit.data.manifest import is_text_column
from contrastkit.pairing import eval_pairs
from contrastkit.protocols import EmbeddingModel

if TYPE_CHECKING:
    from contrastkit.models.model import ContrastiveModel

log = logging.getLogger(__name__)

AT_START = "at_start/"
AT_RANDOM = "at_random/"
AT_START_FILE = "at_start.json"


def has_pretrained_encoder(model: nn.Module) -> bool:
    """Any module of `model` says it carries pretrained weights (`pretrained = True`)."""
    return any(getattr(m, "pretrained", False) is True for m in model.modules())


def at_start_enabled(cfg: Config, model: nn.Module) -> bool:
    """`eval.at_start`, by default on exactly when the model starts from pretrained weights
    (a pretrained encoder or `model.init_from`; a scratch model scores chance at step 0,
    which is not worth an evaluation)."""
    if cfg.eval.at_start is not None:
        return bool(cfg.eval.at_start)
    return has_pretrained_encoder(model) or bool(cfg.model.init_from)


def random_reference(cfg: Config, model: nn.Module) -> nn.Module | None:
    """A copy of the freshly built model, before `model.init_from` loads: the random-weights
    reference of the at-start evaluation. None when there is nothing to compare (no
    init_from, no validation split, at-start evaluation off)."""
    if not cfg.model.init_from or cfg.data.val_split is None:
        return None
    if not at_start_enabled(cfg, model):
        return None
    import copy

    return copy.deepcopy(model)


def evaluate_splits(
    model: EmbeddingModel, bundle: Any, cfg: Config, splits: list[str] | None = None
) -> dict[str, float]:
    """Flat metrics of every split in `splits` (default `eval.splits`) that has rows."""
    from contrastkit.eval.evaluate import evaluate

    was_training = model.training
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for split in splits if splits is not None else cfg.eval.splits:
            dataset = bundle.splits.get(split)
            if dataset is None or len(dataset) == 0:
                continue
            metrics.update(
                evaluate(
                    model,
                    dataset,
                    cfg.eval,
                    split=split,
                    pairs=eval_pairs(cfg),
                    batch_size=cfg.data.eval_batch_size,
                )
            )
    model.train(was_training)
    return metrics


def at_start_metrics(
    model: ContrastiveModel,
    bundle: Any,
    cfg: Config,
    run_dir: Path,
    reference: nn.Module | None = None,
) -> dict[str, float]:
    """The at-start evaluation, prefixed `at_start/` (and the random-weights `reference`'s
    on the validation split, prefixed `at_random/`); {} when disabled.

    A resumed run reads the numbers its first start recorded (`at_start.json`) instead of
    evaluating the half-trained model.
    """
    path = Path(run_dir) / AT_START_FILE
    if path.is_file():
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    if not at_start_enabled(cfg, model):
        return {}
    metrics = {AT_START + k: v for k, v in evaluate_splits(model, bundle, cfg).items()}
    if reference is not None and cfg.data.val_split:
        device = next(model.parameters()).device
        scores = evaluate_splits(reference.to(device), bundle, cfg, [cfg.data.val_split])  # type: ignore[arg-type]
        metrics.update({AT_RANDOM + k: v for k, v in scores.items()})
    path.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    with (Path(run_dir) / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 0, **metrics}) + "\n")
    shown = {k: round(v, 4) for k, v in metrics.items() if k.endswith("R@1")}
    log.info("at-start (zero-shot) evaluation: %s", shown)
    return metrics


def tokenizer_texts(train_set: Any) -> list[str]:
    """Every text of the train split's text columns: what a new tokenizer is built from."""
    return [t for c in sorted(train_set.columns) if is_text_column(c) for t in train_set.texts(c)]


def build_untrained(cfg: Config) -> tuple[ContrastiveModel, Any]:
    """The model `cfg` describes, as built before training, and its datasets."""
    from contrastkit.data import build_datasets
    from contrastkit.models import build_model, build_tokenizer

    torch.manual_seed(cfg.train.seed)
    bundle = build_datasets(cfg.data)
    train_set = bundle.splits[cfg.data.train_split]
    tokenizer = build_tokenizer(cfg.model.tokenizer, tokenizer_texts(train_set))
    specs = dict(train_set.input_specs())
    model = build_model(
        cfg.model,
        tokenizer=tokenizer,
        input_specs=specs,
        num_classes=len(bundle.label_names) or None,
    )
    return model, bundle


def evaluate_config(cfg: Config, split: str) -> dict[str, float]:
    """`contrastkit eval CONFIG.yaml`: the untrained (pretrained) model's metrics on `split`."""
    model, bundle = build_untrained(cfg)
    if split not in bundle.splits:
        from contrastkit.errors import ConfigError

        raise ConfigError(f"--split {split}: the manifest has splits {sorted(bundle.splits)}")
    return evaluate_splits(model, bundle, cfg, [split])
