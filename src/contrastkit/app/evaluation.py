"""Evaluation of a run's splits: the periodic validation the engine runs, and the final
evaluation of the best checkpoint whose metrics go into summary.json."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from contrastkit.config import Config
from contrastkit.pairing import eval_pairs
from contrastkit.protocols import EmbeddingModel
from contrastkit.train import checkpoint_dir as ckpt_dir
from contrastkit.train import checkpoint_files as ckpt_files
from contrastkit.train import state_tensors


def split_evaluator(
    bundle: Any, cfg: Config, split: str, *, final: bool = True
) -> Callable[[nn.Module], dict[str, float]]:
    """Evaluation of one split. The linear probe (which embeds the whole train split and
    fits a classifier) runs only in the final evaluation, not in the periodic ones."""
    from contrastkit.eval.evaluate import evaluate

    dataset = bundle.splits[split]
    train = bundle.splits.get(cfg.data.train_split) if final else None
    if getattr(train, "streaming", False):  # a streamed train split has no random access
        train = None
    # The engine hands back the model it trains: the ContrastiveModel built here.
    return lambda model: evaluate(
        cast(EmbeddingModel, model),
        dataset,
        cfg.eval,
        split=split,
        pairs=eval_pairs(cfg),
        batch_size=cfg.data.eval_batch_size,
        train_dataset=train,
    )


def final_eval(model: nn.Module, bundle: Any, cfg: Config, run_dir: Path) -> dict[str, float]:
    """Evaluate the best (else last) checkpoint on every eval split that exists."""
    tensors, _ = ckpt_files.load_checkpoint(ckpt_dir.resolve_checkpoint(run_dir, "best"))
    model.load_state_dict(state_tensors.sub_state(tensors, "model"))
    model.eval()
    metrics: dict[str, float] = {}
    with torch.no_grad():
        for split in cfg.eval.splits:
            if split in bundle.splits and len(bundle.splits[split]) > 0:
                metrics.update(split_evaluator(bundle, cfg, split)(model))
    return metrics
