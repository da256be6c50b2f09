"""The training engine: the loop, evaluation, checkpoints. Reads top to bottom.

Components come in ready-made (`EngineParts`, parts.py), so the engine runs the real model
and a toy one alike; what a run holds is built in setup.py. Events are fired where
`events.py` documents them; monitors observe through them. Elsewhere: best checkpoint and
early stopping (best.py, evaluation.py), when to save and what to resume
(train/checkpoint/schedule.py), checkpoint contents (train/checkpoint/snapshot.py), the
optimizer step (train/optim/step.py), non-finite steps (train/nonfinite.py), AMP
(precision.py), metrics files, loggers and progress (outputs.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch

from contrastkit.data.collate import to_device
from contrastkit.events import Event, fire
from contrastkit.losses.result import LossOutput
from contrastkit.train.accumulation import accumulation_step
from contrastkit.train.accumulation.context import StepContext, batch_size_of
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.checkpoint import snapshot
from contrastkit.train.checkpoint.schedule import check_position, checkpoint_due, resume_path
from contrastkit.train.distributed import average_gradients, barrier, no_sync
from contrastkit.train.engine import precision
from contrastkit.train.engine.evaluation import agree_stop, eval_due, point_best
from contrastkit.train.engine.outputs import (
    close_outputs,
    open_outputs,
    step_metrics,
    truncate_outputs,
)
from contrastkit.train.engine.setup import EngineSetup
from contrastkit.train.nonfinite import batch_ids, gather_ids
from contrastkit.train.phases import phase_index, phase_label
from contrastkit.train.preemption import Preempted, PreemptionWatch

log = logging.getLogger(__name__)


class Engine(EngineSetup):
    """Trains `parts` under `cfg` (the `train:` section), writing into `run_dir`.

    What the run holds (model, optimizer, schedule, scaler, trackers, counters) is built by
    `EngineSetup` in `setup.py`; this class is what the run does with it.
    """

    # ------------------------------------------------------------------ the run

    def fit(
        self, resume: str | None = None, preemption: PreemptionWatch | None = None
    ) -> dict[str, float]:
        """Train to the end (or early stop), returning the final scalars.

        Args:
            resume: see `resume`.
            preemption: the caller's installed watch (so it also sees signals that arrive
                before and after the loop); without one the engine installs its own.

        Raises:
            NonFiniteError: `train.max_bad_steps` consecutive non-finite steps.
            Preempted: SIGTERM / SIGUSR1 arrived; a checkpoint after the step holds the run.
        """
        start = time.perf_counter()
        self.seconds_before = 0.0  # training time of earlier segments (resumed from meta)
        if resume:
            self.resume(resume)
        self.segment_start = start
        self._open_outputs()
        self.preemption = preemption or PreemptionWatch().install()
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
            if preemption is None:
                self.preemption.close()
        summary = {
            "train/steps": float(self.state.step),
            # Over every segment of a preempted or resumed run, not only this process's.
            "train/seconds": self._train_seconds(),
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

    def _check_position(self) -> None:
        """Compare a resumed stream's position with the checkpoint's, once, at its start."""
        saved, self.saved_position = self.saved_position, None
        check_position(saved, self._data_position())

    def _eval_due(self) -> bool:
        return eval_due(
            self.state.epoch,  # epochs finished
            self.cfg.epochs,
            self.cfg.eval_every_epochs,
            done=self._done(),
            has_evaluate=self.parts.evaluate is not None,
        )

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
        samples_per_s = rows / max(time.perf_counter() - tick, 1e-9)
        state.metrics = step_metrics(
            loss, lr, grad_norm, samples_per_s, epoch=state.epoch, phase=state.phase
        )
        if self.loggers is not None and state.step % self.cfg.log_every == 0:
            self.loggers.log(state.metrics, state.step)
        if self.progress is not None:
            self.progress.update(state.step, state.metrics)
        fire(self.callbacks, Event.BATCH_END, state)
        # Phases switch after BATCH_END so monitors see the step under the phase it ran in.
        self._sync_phase()
        save, signum = self._checkpoint_due()
        # Preempted on the run's last step: the epoch's own checkpoint and evaluation come
        # next, as in an uninterrupted run; the caller sees the signal after `fit`.
        signum = None if self._done() else signum
        path = self.save_checkpoint() if save or signum else None
        if signum:
            raise Preempted(signum, state.step, path)

    def _step_context(self) -> StepContext:
        def on_forward(output, batch):
            self.state.output = output
            fire(self.callbacks, Event.AFTER_FORWARD, self.state)

        def on_loss(loss: LossOutput) -> None:
            self.state.loss = loss
            fire(self.callbacks, Event.AFTER_LOSS, self.state)

        return StepContext(
            autocast=self._autocast,
            scale=precision.loss_scale(self.scaler),
            no_sync=lambda: no_sync(self.ddp_model),
            add_teacher=self.parts.add_teacher,
            on_forward=on_forward,
            on_loss=on_loss,
        )

    def _autocast(self) -> contextlib.AbstractContextManager:
        return precision.autocast(self.cfg.amp, self.device)

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
        step, is_main = self.state.step, self.dist.is_main
        point_best(self.tracker, metrics, checkpoint, self.checkpoint_root, step, is_main=is_main)
        self.eval_pending = False
        agree_stop(self.tracker, self.dist, self.device, self.state.epoch)

    # ------------------------------------------------------------------ checkpoints

    def _checkpoint_due(self) -> tuple[bool, int | None]:
        """(checkpoint due, preemption signal), agreed by every rank."""
        return checkpoint_due(
            self.cfg.checkpoint,
            self.state.step,
            self.last_save,
            self.dist,
            self.device,
            self.preemption.signum,
        )

    def _train_seconds(self) -> float:
        """Training seconds of this segment plus those of the segments before a resume."""
        return self.seconds_before + time.perf_counter() - self.segment_start

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint of the whole training state (rank 0), then sync ranks."""
        path = None
        if self.dist.is_main:
            counters = {**self._counters(), "train_seconds": self._train_seconds()}
            tensors, meta = snapshot.capture(self.trainables, counters)
            path = ckpt_files.save_checkpoint(self.checkpoint_root, self.state.step, tensors, meta)
            ckpt_dir.prune(self.checkpoint_root, self.cfg.checkpoint.keep_last)
        self.last_save = time.monotonic()
        barrier()
        return path

    def resume(self, which: str) -> bool:
        """Load `auto` (newest valid; start fresh only when there is no checkpoint at all),
        `last`, or an explicit checkpoint. Reads only; files are truncated when training starts.

        Raises:
            RunDirError: no usable checkpoint, or one that does not fit this run.
        """
        path = resume_path(self.run_dir, self.checkpoint_root, which)
        if path is None:  # `auto` with no checkpoint at all: start fresh
            self.truncate_at = 0  # a run killed before its first checkpoint left lines
            return False
        tensors, meta = ckpt_files.load_checkpoint(path)
        snapshot.restore(self.trainables, tensors, meta, self.config_json)
        self._load_counters(meta)
        self.seconds_before = float(meta.get("train_seconds", 0.0))
        self.resumed_from, self.truncate_at = path, self.state.step
        log.info("resumed from %s (step %d, epoch %d)", path, self.state.step, self.state.epoch)
        return True

    # ------------------------------------------------------------------ outputs

    def _open_outputs(self) -> None:
        if self.truncate_at is not None and self.dist.is_main:
            # The resumed run logs the steps after its checkpoint again (and a pending
            # evaluation), so drop those lines first; torn lines go too.
            truncate_outputs(self.run_dir, self.truncate_at, drop_evals_at_step=self.eval_pending)
        self.loggers, self.progress = open_outputs(
            self.cfg,
            self.run_dir,
            self.total_steps,
            name=getattr(self.parts.config, "name", "run"),
            config=self.config_json,
            is_main=self.dist.is_main,
        )

    def _close_outputs(self) -> None:
        close_outputs(self.loggers, self.progress)
