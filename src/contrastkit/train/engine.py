"""The training engine: set-up, the loop, evaluation, checkpoints. Reads top to bottom.

Components come in ready-made (`EngineParts`: model, criterion, a loader factory, an
evaluate function, callbacks), so the engine runs the real model and a toy one alike.
Events are fired where `events.py` documents them; monitors observe through them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrastkit.config import TrainConfig
from contrastkit.data.collate import to_device
from contrastkit.errors import ConfigError, RunDirError
from contrastkit.events import Callback, Event, State, fire
from contrastkit.losses.result import LossOutput
from contrastkit.train import checkpoint as ckpt
from contrastkit.train.accumulation import StepContext, accumulation_step, batch_size_of
from contrastkit.train.distributed import (
    DistInfo,
    average_gradients,
    barrier,
    broadcast_flag,
    no_sync,
    wrap_ddp,
)
from contrastkit.train.ema import EMA
from contrastkit.train.loggers import Loggers, build_loggers, truncate_jsonl
from contrastkit.train.lr_schedule import LrScheduler, warmup_steps_for
from contrastkit.train.optim import build_optimizer, with_new_params
from contrastkit.train.phases import PhaseController, WeightsFn, phase_index, phase_label
from contrastkit.train.progress import Progress
from contrastkit.train.rng import capture_rng, restore_rng, rng_from_json, rng_to_json

log = logging.getLogger(__name__)


@dataclass
class EngineParts:
    """What the engine trains and with what.

    Attributes:
        model / criterion: the modules (criterion has `forward`, `contrastive`, `auxiliary`).
        make_loader: `(epoch, start_batch) -> iterable of step batches` (this rank's rows of
            micro-batch x accumulate per batch), deterministic given the epoch.
        steps_per_epoch: optimizer steps in one epoch.
        weights: `(step, phase_index) -> term weights`.
        evaluate: `model -> flat metrics` on the validation split, or None.
        monitor: metric that picks the best checkpoint when `train.monitor` is unset.
        prepare: adds extras to model outputs (EMA teacher embeddings), or None.
        ema: EMA model updated after each step, or None.
    """

    model: nn.Module
    criterion: nn.Module
    make_loader: Callable[[int, int], Iterable[dict]]
    steps_per_epoch: int
    weights: WeightsFn
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    monitor: str | None = None
    callbacks: Sequence[Callback] = ()
    config: Any = None
    probe_batch: dict | None = None
    prepare: Callable | None = None
    ema: EMA | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def config_hash(config: Any) -> str | None:
    if config is None:
        return None
    from contrastkit.config import dump_config

    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]


class Engine:
    """Trains `parts` under `cfg` (the `train:` section), writing into `run_dir`."""

    def __init__(
        self, cfg: TrainConfig, parts: EngineParts, run_dir: Path, *, dist: DistInfo | None = None
    ) -> None:
        self.cfg, self.parts, self.run_dir = cfg, parts, Path(run_dir)
        self.dist = dist or DistInfo()
        self.device = self.dist.device
        if cfg.amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.amp: fp16 needs a CUDA device; use amp: bf16 on CPU")
        self.model = parts.model.to(self.device)
        self.criterion = parts.criterion.to(self.device)
        self.phases = PhaseController(cfg.phases, cfg.freeze, [self.model, self.criterion])
        self.optimizer = build_optimizer(
            [self.model, self.criterion],
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            betas=cfg.betas,
            eps=cfg.eps,
            lr_scale=with_new_params(
                cfg.lr_scale,
                [*getattr(self.model, "new_modules", ()), *dict(self.criterion.named_parameters())],
                lr=cfg.lr,
                scale=cfg.new_params_lr_scale,
            ),
        )
        epochs_steps = cfg.epochs * parts.steps_per_epoch
        self.total_steps = min(cfg.max_steps, epochs_steps) if cfg.max_steps else epochs_steps
        warmup = warmup_steps_for(self.total_steps, cfg.warmup_steps, cfg.warmup_fraction)
        self.scheduler = LrScheduler(
            self.optimizer,
            total_steps=self.total_steps,
            warmup=warmup,
            kind=cfg.lr_schedule,
            min_ratio=cfg.min_lr_ratio,
        )
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.ddp_model = wrap_ddp(self.model, self.dist)
        self.callbacks = list(parts.callbacks)
        self.monitor = cfg.monitor or parts.monitor
        self.batch_in_epoch, self.best, self.bad_evals, self.stop = 0, None, 0, False
        self.best_pending = False
        self.state = State(
            model=self.model,
            criterion=self.criterion,
            optimizer=self.optimizer,
            run_dir=self.run_dir,
            config=parts.config,
            max_steps=self.total_steps,
            probe_batch=parts.probe_batch,
            is_main=self.dist.is_main,
            batch_size=0,
            extras=dict(parts.extras),
        )
        self.phase_weights = parts.weights(0, 0)
        self.state.extras["loss_fn"] = lambda output, batch: self.criterion(
            output, batch, self.phase_weights
        )
        self.loggers: Loggers | None = None
        self.progress: Progress | None = None

    # ------------------------------------------------------------------ the run

    def fit(self, resume: str | None = None) -> dict[str, float]:
        """Train to the end (or early stop), returning the final scalars."""
        start = time.perf_counter()
        if resume:
            self.resume(resume)
        self._open_outputs()
        self._enter_phase(
            phase_index(self.cfg.phases, self.state.epoch, self.state.step), announce=False
        )
        fire(self.callbacks, Event.FIT_START, self.state)
        while self.state.epoch < self.cfg.epochs and not self._done():
            self._run_epoch()
        fire(self.callbacks, Event.FIT_END, self.state)
        self._close_outputs()
        summary = {
            "train/steps": float(self.state.step),
            "train/seconds": time.perf_counter() - start,
        }
        if self.best is not None and self.monitor:
            summary[f"best/{self.monitor}"] = self.best
        return {
            **{k: v for k, v in self.state.metrics.items() if k.startswith("train/")},
            **summary,
        }

    def _done(self) -> bool:
        return self.stop or self.state.step >= self.total_steps

    def _run_epoch(self) -> None:
        self._sync_phase()
        fire(self.callbacks, Event.EPOCH_START, self.state)
        for batch in self.parts.make_loader(self.state.epoch, self.batch_in_epoch):
            self._train_step(to_device(batch, self.device))
            if self._done():
                break
        if self._eval_due():
            self._evaluate()
        self.state.epoch += 1
        self.batch_in_epoch = 0
        self.save_checkpoint()
        fire(self.callbacks, Event.EPOCH_END, self.state)

    def _eval_due(self) -> bool:
        epoch = self.state.epoch + 1
        last = epoch >= self.cfg.epochs or self._done()
        return self.parts.evaluate is not None and (epoch % self.cfg.eval_every_epochs == 0 or last)

    # ------------------------------------------------------------------ one step

    def _train_step(self, batch: dict) -> None:
        tick = time.perf_counter()
        state = self.state
        state.batch = batch
        self.phase_weights = self.parts.weights(state.step, state.phase)
        fire(self.callbacks, Event.BATCH_START, state)
        self.model.train()
        self.criterion.train()
        loss = accumulation_step(
            self.ddp_model,
            self.criterion,
            batch,
            self.phase_weights,
            self._step_context(),
            accumulate=self.cfg.accumulate,
            mode=self.cfg.accumulation,
        )
        average_gradients(self.criterion.parameters())
        fire(self.callbacks, Event.AFTER_BACKWARD, state)
        lr = self.optimizer.param_groups[0]["lr"]
        grad_norm = self._optimizer_step()
        state.step += 1
        self.batch_in_epoch += 1
        rows = batch_size_of(batch) * self.dist.world_size
        state.batch_size = rows
        state.metrics = self._step_metrics(
            loss, lr, grad_norm, rows / max(time.perf_counter() - tick, 1e-9)
        )
        if self.loggers is not None and state.step % self.cfg.log_every == 0:
            self.loggers.log(state.metrics, state.step)
        if self.progress is not None:
            self.progress.update(state.step, state.metrics)
        fire(self.callbacks, Event.BATCH_END, state)
        self._sync_phase()
        every = self.cfg.checkpoint.every_steps
        if every and state.step % every == 0:
            self.save_checkpoint()

    def _step_context(self) -> StepContext:
        def on_forward(output, batch):
            self.state.output = output
            fire(self.callbacks, Event.AFTER_FORWARD, self.state)

        def on_loss(loss: LossOutput) -> None:
            self.state.loss = loss
            fire(self.callbacks, Event.AFTER_LOSS, self.state)

        return StepContext(
            autocast=self._autocast,
            scale=self.scaler.scale if self.scaler else (lambda t: t),
            no_sync=lambda: no_sync(self.ddp_model),
            prepare=self.parts.prepare,
            on_forward=on_forward,
            on_loss=on_loss,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _optimizer_step(self) -> float:
        """Unscale (fp16), clip, step optimizer and scheduler; returns the pre-clip grad norm."""
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.parts.ema is not None:
            self.parts.ema.update(self.model)
        return norm

    def _step_metrics(
        self, loss: LossOutput, lr: float, grad_norm: float, samples_per_s: float
    ) -> dict[str, float]:
        m: dict[str, float] = {
            "epoch": float(self.state.epoch),
            "phase": float(self.state.phase),
            "train/lr": lr,
            "train/loss": float(loss.total.detach()),
            "train/grad_norm": grad_norm,
            "train/samples_per_s": samples_per_s,
        }
        for term, value in loss.terms.items():
            m[f"train/{term}"] = float(value.detach())
            m[f"train/{term}_weighted"] = float(loss.weights.get(term, 0.0)) * float(value.detach())
        m.update({f"train/{k}": float(v) for k, v in loss.stats.items()})
        return m

    # ------------------------------------------------------------------ phases

    def _enter_phase(self, index: int, *, announce: bool) -> None:
        old = self.state.phase
        old_weights = self.parts.weights(self.state.step, old)
        self.phases.apply(index)
        self.scheduler.set_phase_scale(self.phases.lr_scale(index))
        self.state.phase = index
        self.state.phase_name = phase_label(self.cfg.phases, index)
        if announce:
            new_weights = self.parts.weights(self.state.step, index)
            text = self.phases.describe(
                old, index, self.state.epoch, self.state.step, old_weights, new_weights
            )
            log.info(text)
            if self.progress is not None:
                self.progress.message(text)
            fire(self.callbacks, Event.PHASE_CHANGE, self.state)

    def _sync_phase(self) -> None:
        index = phase_index(self.cfg.phases, self.state.epoch, self.state.step)
        if index != self.state.phase:
            self._enter_phase(index, announce=True)

    # ------------------------------------------------------------------ evaluation

    def _evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            metrics = dict(self.parts.evaluate(self.model))
        self.state.eval_metrics = metrics
        if self.loggers is not None:
            self.loggers.log({"epoch": float(self.state.epoch), **metrics}, self.state.step)
        fire(self.callbacks, Event.EVAL_END, self.state)
        self._track(metrics)

    def _track(self, metrics: dict[str, float]) -> None:
        """Best value of the monitored metric and early stopping."""
        if not self.monitor:
            return
        if self.monitor not in metrics and self.cfg.monitor is None:
            log.warning(
                "default monitor %s is not among the eval metrics; no best checkpoint", self.monitor
            )
            self.monitor = None
            return
        if self.monitor not in metrics:
            raise ConfigError(
                f"train.monitor: {self.monitor!r} is not among the eval metrics: {', '.join(sorted(metrics)[:20])}"
            )
        value = float(metrics[self.monitor])
        sign = 1.0 if self.cfg.monitor_mode == "max" else -1.0
        min_delta = self.cfg.early_stopping.min_delta if self.cfg.early_stopping else 0.0
        if self.best is None or sign * (value - self.best) > min_delta:
            self.best, self.bad_evals, self.best_pending = value, 0, True
        else:
            self.bad_evals += 1
        es = self.cfg.early_stopping
        stop = es is not None and self.bad_evals >= es.patience
        self.stop = broadcast_flag(stop, self.device) if self.dist.enabled else stop
        if self.stop:
            log.info(
                "early stopping at epoch %d: %s did not improve for %d evaluations",
                self.state.epoch,
                self.monitor,
                self.bad_evals,
            )

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_root(self) -> Path:
        return self.run_dir / "checkpoints"

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the whole training state (rank 0), then sync ranks."""
        path = None
        if self.dist.is_main:
            tensors = {
                **ckpt.module_tensors("model", self.model),
                **ckpt.module_tensors("criterion", self.criterion),
            }
            opt_tensors, opt_meta = ckpt.optimizer_tensors(self.optimizer)
            tensors.update(opt_tensors)
            if self.parts.ema is not None:
                tensors.update({f"ema.{k}": v for k, v in self.parts.ema.state_dict().items()})
            meta = self._meta(opt_meta)
            meta["callbacks"] = ckpt.split_tensors(meta["callbacks"], "callbacks", tensors)
            path = ckpt.save_checkpoint(self.checkpoint_root, self.state.step, tensors, meta)
            if self.best_pending and self.monitor and self.best is not None:
                ckpt.set_best(self.checkpoint_root, path, self.monitor, self.best, self.state.step)
            self.best_pending = False
            ckpt.prune(self.checkpoint_root, self.cfg.checkpoint.keep_last)
        barrier()
        return path

    def _meta(self, opt_meta: dict) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "phase": self.state.phase,
            "rng": rng_to_json(capture_rng()),
            "best": self.best,
            "monitor": self.monitor,
            "bad_evals": self.bad_evals,
            "stop": self.stop,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "optimizer": opt_meta,
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "config_hash": config_hash(self.parts.config),
        }

    def resume(self, which: str) -> bool:
        """Load `auto` (newest valid, or start fresh if none) or an explicit checkpoint."""
        if which == "auto":
            path = ckpt.latest_checkpoint(self.checkpoint_root)
            if path is None:
                log.info("resume auto: no checkpoint in %s, starting fresh", self.checkpoint_root)
                return False
        else:
            path = ckpt.resolve_checkpoint(self.run_dir, which)
        tensors, meta = ckpt.load_checkpoint(path)
        self._restore(tensors, meta)
        log.info("resumed from %s (step %d, epoch %d)", path, self.state.step, self.state.epoch)
        return True

    def _restore(self, tensors: dict, meta: dict) -> None:
        if meta.get("config_hash") != config_hash(self.parts.config):
            log.warning("resuming with a config that differs from the checkpoint's")
        self.model.load_state_dict(ckpt.sub_state(tensors, "model"))
        self.criterion.load_state_dict(ckpt.sub_state(tensors, "criterion"))
        ckpt.load_optimizer(self.optimizer, tensors, meta["optimizer"])
        self.scheduler.load_state_dict(meta["scheduler"])
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        if self.parts.ema is not None:
            self.parts.ema.load_state_dict(ckpt.sub_state(tensors, "ema"))
        saved_cbs = ckpt.join_tensors(meta.get("callbacks", []), tensors)
        if len(saved_cbs) != len(self.callbacks):
            raise RunDirError(
                f"checkpoint has {len(saved_cbs)} callback states, the run has {len(self.callbacks)} callbacks"
            )
        for cb, cb_state in zip(self.callbacks, saved_cbs, strict=True):
            cb.load_state_dict(cb_state)
        self.state.step, self.state.epoch = meta["step"], meta["epoch"]
        self.state.phase = meta["phase"]
        self.batch_in_epoch, self.best = meta["batch_in_epoch"], meta["best"]
        self.bad_evals, self.stop = meta["bad_evals"], meta["stop"]
        if self.dist.is_main:
            truncate_jsonl(self.run_dir / "metrics.jsonl", self.state.step)
        restore_rng(rng_from_json(meta["rng"]))

    # ------------------------------------------------------------------ outputs

    def _open_outputs(self) -> None:
        cfg_dict = (
            self.parts.config.model_dump(mode="json") if self.parts.config is not None else {}
        )
        name = getattr(self.parts.config, "name", "run")
        self.loggers = build_loggers(
            self.cfg.loggers, self.run_dir, is_main=self.dist.is_main, name=name, config=cfg_dict
        )
        self.progress = Progress(
            self.cfg.progress, self.total_steps, self.cfg.log_every, is_main=self.dist.is_main
        )

    def _close_outputs(self) -> None:
        if self.loggers is not None:
            self.loggers.close()
        if self.progress is not None:
            self.progress.close()


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))
