"""Evaluation of a run's splits: the periodic validation the engine runs, and the final
evaluation of the best checkpoint whose metrics go into summary.json.

Both also score the run's fixed train sample (`eval/train_sample.py`, keys
`train_sample/...`), so that every validation sits next to the same protocol on training
pairs, and carry the trivial baselines of `eval/baselines.py`, read from the train split
once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from contrastkit.config import Config
from contrastkit.pairing import eval_pairs
from contrastkit.protocols import EmbeddingModel
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.checkpoint import state_tensors


def _train_split(bundle: Any, cfg: Config) -> Any:
    """The train split when it has random access (a streamed one has not), else None."""
    train = bundle.splits.get(cfg.data.train_split)
    return None if getattr(train, "streaming", False) else train


def _val_split(bundle: Any, cfg: Config) -> Any:
    return bundle.splits.get(cfg.data.val_split) if cfg.data.val_split else None


def train_sample_evaluator(bundle: Any, cfg: Config) -> Callable[[nn.Module], dict[str, float]]:
    """Scores of the run's fixed train sample (`train_sample/` keys; {} when it is off)."""
    from contrastkit.eval.train_sample import train_sample, train_sample_keys

    sample = train_sample(
        _train_split(bundle, cfg), cfg.eval, _val_split(bundle, cfg), cfg.train.seed
    )
    if sample is None:
        return lambda model: {}
    pairs = eval_pairs(cfg)
    return lambda model: train_sample_keys(
        cast(EmbeddingModel, model), sample, cfg.eval, pairs, cfg.data.eval_batch_size
    )


def split_evaluator(
    bundle: Any, cfg: Config, split: str, *, final: bool = True
) -> Callable[[nn.Module], dict[str, float]]:
    """Evaluation of one split. The linear probe (which embeds the whole train split and
    fits a classifier) runs only in the final evaluation, not in the periodic ones; the
    periodic ones also score the train sample."""
    from contrastkit.eval.baselines import train_baselines
    from contrastkit.eval.evaluate import evaluate

    dataset = bundle.splits[split]
    train = _train_split(bundle, cfg)
    column = str(getattr(cfg.model.heads.get("captioning"), "text_column", "text"))
    baselines = train_baselines(train, column) if train is not None else None
    sample = train_sample_evaluator(bundle, cfg) if not final else (lambda model: {})

    # The engine hands back the model it trains: the ContrastiveModel built here.
    def run(model: nn.Module) -> dict[str, float]:
        metrics = evaluate(
            cast(EmbeddingModel, model),
            dataset,
            cfg.eval,
            split=split,
            pairs=eval_pairs(cfg),
            batch_size=cfg.data.eval_batch_size,
            train_dataset=train if final else None,
            baselines=baselines,
        )
        return {**metrics, **sample(model)}

    return run


def final_eval(model: nn.Module, bundle: Any, cfg: Config, run_dir: Path) -> dict[str, float]:
    """Evaluate the best (else last) checkpoint on every eval split that exists, and the
    train sample once."""
    tensors, _ = ckpt_files.load_checkpoint(ckpt_dir.resolve_checkpoint(run_dir, "best"))
    model.load_state_dict(state_tensors.sub_state(tensors, "model"))
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for split in cfg.eval.splits:
            if split in bundle.splits and len(bundle.splits[split]) > 0:
                metrics.update(split_evaluator(bundle, cfg, split)(model))
        metrics.update(train_sample_evaluator(bundle, cfg)(model))
    return metrics
