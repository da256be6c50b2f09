"""The training engine: set-up, the loop, evaluation, checkpoints. Reads top to bottom.

Components come in ready-made (`EngineParts`: model, criterion, a loader factory, an
evaluate function, callbacks), so the engine runs the real model and a toy one alike.
Events are fired where `events.py` documents them; monitors observe through them.
Best-checkpoint tracking lives in `best.py`, the checkpoint contents in `snapshot.py`,
the optimizer step in `optimizer_step.py`, non-finite step handling in `nonfinite.py`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from contrastkit.config import TrainConfig
from contrastkit.data.collate import to_device
from contrastkit.errors import ConfigError, RunDirError
from contrastkit.events import Callback, Event, State, fire
from contrastkit.losses.multitask import MultitaskLoss
from contrastkit.losses.result import LossOutput
from contrastkit.train import checkpoint as ckpt
from contrastkit.train import snapshot
from contrastkit.train.accumulation import StepContext, accumulation_step, batch_size_of
from contrastkit.train.best import BestTracker
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
from contrastkit.train.nonfinite import BadStepGuard, batch_ids, gather_ids
from contrastkit.train.optim import build_optimizer, layer_decay_scales, with_new_params
from contrastkit.train.optimizer_step import OptimizerStep
from contrastkit.train.phases import PhaseController, WeightsFn, phase_index, phase_label
from contrastkit.train.progress import Progress

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SIGNALS_FILE = "signals.jsonl"  # written by the doctor's monitors; truncated on resume here


@dataclass
class EngineParts:
    """What the engine trains and with what.

    Attributes:
        model / criterion: the modules (criterion: a `MultitaskLoss`, or a module with its
            `forward`, `contrastive` and `auxiliary`).
        make_loader: `(epoch, start_batch) -> iterable of step batches` (this rank's rows of
            micro-batch x accumulate per batch), deterministic given the epoch.
        steps_per_epoch: optimizer steps in one epoch.
        weights: `(step, phase_index) -> term weights`.
        evaluate: `model -> flat metrics` on the validation split, or None.
        select_metric: metric that picks the best checkpoint when `train.select_metric` is unset.
        config: the whole run config (saved in checkpoints to name changed keys on resume).
        add_teacher: adds the teacher's embeddings (EMA or a fixed teacher) to model
            outputs for the distillation term, or None.
        ema: EMA model updated after each step, or None.
    """

    model: nn.Module
    criterion: MultitaskLoss
    make_loader: Callable[[int, int], Iterable[dict]]
    steps_per_epoch: int
    weights: WeightsFn
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    select_metric: str | None = None
    callbacks: Sequence[Callback] = ()
    config: Any = None
    probe_batch: dict | None = None
    add_teacher: Callable | None = None
    ema: EMA | None = None


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
                {**layer_decay_scales(self.model, cfg.layer_decay), **cfg.lr_scale},
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
        es = cfg.early_stopping
        self.tracker = BestTracker(
            cfg.select_metric or parts.select_metric,
            user_set=cfg.select_metric is not None,
            mode=cfg.select_mode,
            min_delta=es.min_delta if es else 0.0,
            patience=es.patience if es else None,
        )
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

    # ------------------------------------------------------------------ the run

    def fit(self, resume: str | None = None) -> dict[str, float]:
        """Train to the end (or early stop), returning the final scalars.

        Raises:
            NonFiniteError: `train.max_bad_steps` consecutive non-finite steps.
        """
        start = time.perf_counter()
        if resume:
            self.resume(resume)
        self._open_outputs()
        try:
            self._enter_phase(
                phase_index(self.cfg.phases, self.state.epoch, self.state.step), announce=False
            )
            fire(self.callbacks, Event.FIT_START, self.state)
            if self.eval_pending:  # killed during the evaluation after its checkpoint: redo it
                self._evaluate(self.resumed_from)
                fire(self.callbacks, Event.EPOCH_END, self.state)
            while self.state.epoch < self.cfg.epochs and not self._done():
                self._run_epoch()
            fire(self.callbacks, Event.FIT_END, self.state)
        finally:
            self._close_outputs()
        summary = {
            "train/steps": float(self.state.step),
            "train/seconds": time.perf_counter() - start,
            "train/bad_steps": float(self.guard.total),
        }
        if self.tracker.best is not None and self.tracker.metric:
            summary[f"best/{self.tracker.metric}"] = self.tracker.best
        return {
            **{k: v for k, v in self.state.metrics.items() if k.startswith("train/")},
            **summary,
        }

    def _done(self) -> bool:
        return self.tracker.stop or self.state.step >= self.total_steps

    def _run_epoch(self) -> None:
        self._sync_phase()
        fire(self.callbacks, Event.EPOCH_START, self.state)
        self.loader = self.parts.make_loader(self.state.epoch, self.batch_in_epoch)
        self._check_position()
        for batch in self.loader:
            self._train_step(to_device(batch, self.device))
            if self._done():
                break
        self.loader = None
        self.state.epoch += 1
        self.batch_in_epoch = 0
        # Checkpoint before evaluating: a kill during a long validation pass must not lose
        # the epoch. The checkpoint says its evaluation is pending, so a resume redoes it.
        self.eval_pending = self._eval_due()
        path = self.save_checkpoint()
        if self.eval_pending:
            self._evaluate(path)
        fire(self.callbacks, Event.EPOCH_END, self.state)

    def _data_position(self) -> dict | None:
        """A streamed loader's position (shards done + offset per stream) at this step."""
        at = getattr(self.loader, "position", None)
        return at(self.batch_in_epoch) if at is not None else None

    def _check_position(self) -> None:
        """A resumed stream must stand where the checkpoint's stream stood; it does not when
        the shards, the number of processes or of loader workers changed."""
        saved, self.saved_position = self.saved_position, None
        now = self._data_position()
        if saved is not None and now is not None and saved != now:
            raise RunDirError(
                f"the data stream differs from the checkpoint's (shards, processes or "
                f"data.num_workers changed): checkpoint at {saved}, this run at {now}"
            )

    def _eval_due(self) -> bool:
        epoch = self.state.epoch  # epochs finished
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
        # DDP averages the model's gradients inside backward; the loss's own parameters
        # (temperature, bias) sit outside DDP, so average them before anything reads them.
        average_gradients(self.criterion.parameters())
        loss_value = float(loss.total.detach())
        # Decide on the step before AFTER_BACKWARD: monitors must not record gradients of a
        # step that is thrown away, and every rank must take the same decision.
        if self.stepper.is_bad(loss_value):
            self._skip_step(loss_value, batch)
            return
        fire(self.callbacks, Event.AFTER_BACKWARD, state)
        lr = self.optimizer.param_groups[0]["lr"]  # read before the scheduler moves it
        grad_norm = self.stepper.step()
        self.guard.good()
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
        # Phases switch after BATCH_END so monitors see the step under the phase it ran in.
        self._sync_phase()
        if self._checkpoint_due():
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
            add_teacher=self.parts.add_teacher,
            on_forward=on_forward,
            on_loss=on_loss,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _skip_step(self, loss_value: float, batch: dict) -> None:
        """Drop the gradients; optimizer, scheduler and scaler stay as they were."""
        self.stepper.skip()
        self.batch_in_epoch += 1  # the batch is consumed: a resume must not replay it
        ids = gather_ids(batch_ids(batch))
        # Logged under the step it would have been, so resume truncation (<= step) drops it.
        attempted = self.state.step + 1
        record = self.guard.bad(step=attempted, loss=loss_value, ids=ids)
        if self.loggers is not None:
            self.loggers.log({"epoch": float(self.state.epoch), **record}, attempted)

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

    def _evaluate(self, checkpoint: Path | None) -> None:
        """Evaluate, then point best.json at `checkpoint` (rank 0's path) if it improved."""
        assert self.parts.evaluate is not None  # _eval_due is False without it
        self.model.eval()
        with torch.no_grad():
            metrics = dict(self.parts.evaluate(self.model))
        self.state.eval_metrics = metrics
        if self.loggers is not None:
            self.loggers.log({"epoch": float(self.state.epoch), **metrics}, self.state.step)
        fire(self.callbacks, Event.EVAL_END, self.state)
        improved = self.tracker.observe(metrics)
        metric, best = self.tracker.metric, self.tracker.best  # both set when improved
        if (
            improved
            and checkpoint is not None
            and self.dist.is_main
            and metric
            and best is not None
        ):
            ckpt.set_best(self.checkpoint_root, checkpoint, metric, best, self.state.step)
        self.eval_pending = False
        stop = self.tracker.stop
        # Rank 0 decides: evaluation on each rank may differ in the last float bit.
        self.tracker.stop = broadcast_flag(stop, self.device) if self.dist.enabled else stop
        if self.tracker.stop:
            log.info(
                "early stopping at epoch %d: %s did not improve for %d evaluations",
                self.state.epoch,
                self.tracker.metric,
                self.tracker.bad_evals,
            )

    # ------------------------------------------------------------------ checkpoints

    @property
    def checkpoint_root(self) -> Path:
        """The folder holding this run's checkpoints."""
        return self.run_dir / "checkpoints"

    def _checkpoint_due(self) -> bool:
        every = self.cfg.checkpoint.every_steps
        due = bool(every and self.state.step % every == 0)
        minutes = self.cfg.checkpoint.every_minutes
        if minutes and not due:
            due = time.monotonic() - self.last_save >= minutes * 60.0
            # Clocks differ per rank; rank 0's decision keeps the save barrier in step.
            due = broadcast_flag(due, self.device) if self.dist.enabled else due
        return due

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the whole training state (rank 0), then sync ranks."""
        path = None
        if self.dist.is_main:
            tensors, meta = snapshot.capture(self.trainables, self._counters())
            path = ckpt.save_checkpoint(self.checkpoint_root, self.state.step, tensors, meta)
            ckpt.prune(self.checkpoint_root, self.cfg.checkpoint.keep_last)
        self.last_save = time.monotonic()
        barrier()
        return path

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

    def resume(self, which: str) -> bool:
        """Load `auto` (newest valid; start fresh only when there is no checkpoint at all),
        `last`, or an explicit checkpoint. Reads only; files are truncated when training starts.

        Raises:
            RunDirError: no usable checkpoint, or one that does not fit this run.
        """
        if which == "auto":
            path = ckpt.auto_resume_checkpoint(self.checkpoint_root)
            if path is None:
                log.info("resume auto: no checkpoint in %s, starting fresh", self.checkpoint_root)
                self.truncate_at = 0  # a run killed before its first checkpoint left lines
                return False
        else:
            path = ckpt.resolve_checkpoint(self.run_dir, which)
        tensors, meta = ckpt.load_checkpoint(path)
        snapshot.restore(self.trainables, tensors, meta, self.config_json)
        self.state.step, self.state.epoch = meta["step"], meta["epoch"]
        self.state.phase = meta["phase"]
        self.batch_in_epoch = meta["batch_in_epoch"]
        self.saved_position = meta.get("data_position")
        self.tracker.load_state_dict(meta)
        self.guard.load_state_dict(meta.get("bad_steps", {}))
        self.eval_pending = bool(meta.get("eval_pending", False))
        self.resumed_from, self.truncate_at = path, self.state.step
        log.info("resumed from %s (step %d, epoch %d)", path, self.state.step, self.state.epoch)
        return True

    # ------------------------------------------------------------------ outputs

    def _open_outputs(self) -> None:
        if self.truncate_at is not None and self.dist.is_main:
            # The resumed run logs the steps after its checkpoint again (and a pending
            # evaluation), so drop those lines first; torn lines go too.
            step = self.truncate_at
            truncate_jsonl(self.run_dir / METRICS_FILE, step, drop_evals_at_step=self.eval_pending)
            truncate_jsonl(self.run_dir / SIGNALS_FILE, step)
        name = getattr(self.parts.config, "name", "run")
        self.loggers = build_loggers(
            self.cfg.loggers,
            self.run_dir,
            is_main=self.dist.is_main,
            name=name,
            config=self.config_json,
        )
        self.progress = Progress(
            self.cfg.progress, self.total_steps, self.cfg.log_every, is_main=self.dist.is_main
        )

    def _close_outputs(self) -> None:
        if self.loggers is not None:
            self.loggers.close()
        if self.progress is not None:
            self.progress.close()
