"""The engine's set-up: everything a training run holds, built from `train:` and the parts.

`EngineSetup` builds model, loss, optimizer, schedule, scaler, DDP wrapper, trackers and
the loop's counters, in that order; `Engine` (loop.py) adds the loop, evaluation and
checkpoints on top. The builders below keep each piece's configuration out of that list.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrastkit.config import TrainConfig
from contrastkit.events import State
from contrastkit.train.checkpoint import snapshot
from contrastkit.train.distributed import DistInfo, wrap_ddp
from contrastkit.train.engine import precision
from contrastkit.train.engine.best import BestTracker
from contrastkit.train.engine.parts import EngineParts
from contrastkit.train.loggers import Loggers
from contrastkit.train.nonfinite import BadStepGuard
from contrastkit.train.optim.groups import build_optimizer, layer_decay_scales, with_new_params
from contrastkit.train.optim.schedule import LrScheduler, warmup_steps_for
from contrastkit.train.optim.step import OptimizerStep
from contrastkit.train.phases import PhaseController
from contrastkit.train.progress import Progress


def engine_optimizer(cfg: TrainConfig, model: nn.Module, criterion: nn.Module) -> torch.optim.AdamW:
    """AdamW over model then criterion: layer decay, `train.lr_scale`, new parameters' scale."""
    return build_optimizer(
        [model, criterion],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        betas=cfg.betas,
        eps=cfg.eps,
        lr_scale=with_new_params(
            {**layer_decay_scales(model, cfg.layer_decay), **cfg.lr_scale},
            [*getattr(model, "new_modules", ()), *dict(criterion.named_parameters())],
            lr=cfg.lr,
            scale=cfg.new_params_lr_scale,
        ),
    )


def total_steps_for(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimizer steps in the run: every epoch's, capped by `train.max_steps`."""
    epochs_steps = cfg.epochs * steps_per_epoch
    return min(cfg.max_steps, epochs_steps) if cfg.max_steps else epochs_steps


def engine_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> LrScheduler:
    """Warm-up then `train.lr_schedule` over `total_steps`."""
    warmup = warmup_steps_for(total_steps, cfg.warmup_steps, cfg.warmup_fraction)
    return LrScheduler(
        optimizer,
        total_steps=total_steps,
        warmup=warmup,
        kind=cfg.lr_schedule,
        min_ratio=cfg.min_lr_ratio,
    )


def best_tracker(cfg: TrainConfig, default_metric: str | None) -> BestTracker:
    """`train.select_metric` (else the run's default) and `train.early_stopping`."""
    es = cfg.early_stopping
    return BestTracker(
        cfg.select_metric or default_metric,
        user_set=cfg.select_metric is not None,
        mode=cfg.select_mode,
        min_delta=es.min_delta if es else 0.0,
        patience=es.patience if es else None,
    )


class EngineSetup:
    """What a run holds: built once, before the first step; `Engine` runs it."""

    def __init__(
        self, cfg: TrainConfig, parts: EngineParts, run_dir: Path, *, dist: DistInfo | None = None
    ) -> None:
        self.cfg, self.parts, self.run_dir = cfg, parts, Path(run_dir)
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        precision.check_amp(cfg.amp, self.device)
        self.model = parts.model.to(self.device)
        self.criterion = parts.criterion.to(self.device)
        self.phases = PhaseController(cfg.phases, cfg.freeze, [self.model, self.criterion])
        self.optimizer = engine_optimizer(cfg, self.model, self.criterion)
        self.total_steps = total_steps_for(cfg, parts.steps_per_epoch)
        self.scheduler = engine_scheduler(cfg, self.optimizer, self.total_steps)
        self.scaler = precision.grad_scaler(cfg.amp)
        self.ddp_model = wrap_ddp(self.model, self.dist)
        self.callbacks = list(parts.callbacks)
        self.tracker = best_tracker(cfg, parts.select_metric)
        self.guard = BadStepGuard(cfg.max_bad_steps)
        self.stepper = OptimizerStep(
            self.optimizer,
            self.scheduler,
            self.model,
            self.criterion,
            scaler=self.scaler,
            grad_clip=cfg.grad_clip,
            ema=parts.ema,
            device=self.device,
        )
        self.trainables = snapshot.Trainables(
            self.model,
            self.criterion,
            self.optimizer,
            self.scheduler,
            self.scaler,
            parts.ema,
            self.callbacks,
        )
        self.config_json = snapshot.config_dict(parts.config)
        self.batch_in_epoch = 0
        self.eval_pending = False  # the last checkpoint was written before its evaluation
        self.resumed_from: Path | None = None
        self.truncate_at: int | None = None  # metrics/signals lines after this step go
        self.last_save = time.monotonic()
        self.loader: Any = None  # this epoch's loader (a stream reports its position)
        self.saved_position: dict | None = None  # the resumed checkpoint's data position
        self.state = State(
            model=self.model,
            criterion=self.criterion,
            optimizer=self.optimizer,
            run_dir=self.run_dir,
            max_steps=self.total_steps,
            probe_batch=parts.probe_batch,
            is_main=self.dist.is_main,
            batch_size=0,
        )
        self.phase_weights = parts.weights(0, 0)
        self.loggers: Loggers | None = None
        self.progress: Progress | None = None

    @property
    def checkpoint_root(self) -> Path:
        """The folder holding this run's checkpoints."""
        return self.run_dir / "checkpoints"

    # ------------------------------------------------------------------ counters

    def _data_position(self) -> dict | None:
        """A streamed loader's position (shards done + offset per stream) at this step."""
        at = getattr(self.loader, "position", None)
        return at(self.batch_in_epoch) if at is not None else None

    def _counters(self) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "data_position": self._data_position(),
            "phase": self.state.phase,
            **self.tracker.state_dict(),
            "bad_steps": self.guard.state_dict(),
            "eval_pending": self.eval_pending,
            "config": self.config_json,
        }

    def _load_counters(self, meta: dict[str, Any]) -> None:
        """Put the loop's counters back from a checkpoint's `_counters()`."""
        self.state.step, self.state.epoch = meta["step"], meta["epoch"]
        self.state.phase = meta["phase"]
        self.batch_in_epoch = meta["batch_in_epoch"]
        self.saved_position = meta.get("data_position")
        self.tracker.load_state_dict(meta)
        self.guard.load_state_dict(meta.get("bad_steps", {}))
        self.eval_pending = bool(meta.get("eval_pending", False))
