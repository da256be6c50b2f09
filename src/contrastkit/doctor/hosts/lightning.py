"""The doctor in Lightning: `Trainer(callbacks=[DoctorCallback()])`, and `training_step`
returns a dict.

`training_step` returns `{"loss": loss}` plus, optionally, what the doctor reads:
`embeddings` (the two towers' B x D embeddings), `logit_scale` (the multiplier of the
cosine similarities, 1 / temperature), `logit_bias`, `terms` (unweighted loss terms by
name, one of them `contrastive`) and `groups`. The callback feeds one `Watcher`
(hosts/watcher.py):

| Lightning hook | watcher | note |
|---|---|---|
| `on_train_start` | `attach` | optimizer `trainer.optimizers[0]`; batch size from the train DataLoader |
| `on_before_optimizer_step` | `before_step` | gradients unscaled, before clipping |
| `on_train_batch_end` | `observe`, then `after_step` when `global_step` moved | `outputs` is training_step's dict |
| `on_validation_epoch_end` | `evaluate` | `trainer.callback_metrics` whose name starts with `val`; a `trainer.validate()` before `fit()` is the at-start reference |
| `on_train_end` | `close` | files and the printed findings |

Torch's optimizer step hooks are not used here: a Lightning optimizer runs the closure
(forward and backward) *inside* `optimizer.step(closure)`, so a pre-step hook would fire
before the gradients exist. Lightning divides the loss in `outputs` by
`accumulate_grad_batches`; the doctor's loss rules compare start with end, which that
constant factor leaves unchanged, and chance level is read at `accumulate_grad_batches=1`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from contrastkit.doctor.hosts.library import host_library
from contrastkit.doctor.hosts.watcher import Watcher
from contrastkit.doctor.report import print_findings

pl = host_library("lightning.pytorch", "lightning")

# Keys of training_step's returned dict that `observe` takes, besides `loss`.
OBSERVED = ("terms", "embeddings", "groups", "logit_scale", "logit_bias")
# `trainer.callback_metrics` names read as evaluation metrics (Lightning's convention).
EVAL_PREFIX = "val"


class DoctorCallback(pl.Callback):  # type: ignore[name-defined]  # a lazily imported module
    """contrastkit's doctor as a Lightning `Callback` (see the module docstring).

    Args:
        run_dir: where the doctor's files go (default: `<default_root_dir>/doctor`).
        batch_size: candidates per query in the loss (default: the train DataLoader's
            `batch_size`).
        print_findings: print the findings table at the end of training (rank 0).
        **options: `attach` options (towers, objective, weights, pretrained,
            select_metric, every, ...).
    """

    def __init__(
        self,
        run_dir: str | Path | None = None,
        *,
        batch_size: int | None = None,
        print_findings: bool = True,
        **options: Any,
    ) -> None:
        self.run_dir = run_dir
        self.batch_size = batch_size
        self.print = print_findings
        self.options = options
        self.watcher: Watcher | None = None
        self.findings: list[Any] | None = None
        self._early_evals: list[dict[str, float]] = []

    def _batch_size(self, trainer: Any) -> int:
        if self.batch_size is not None:
            return self.batch_size
        loader = trainer.train_dataloader
        size = getattr(loader, "batch_size", None)
        if not isinstance(size, int):
            raise ValueError(
                "DoctorCallback: the train DataLoader has no integer batch_size (a batch "
                "sampler?); pass DoctorCallback(batch_size=...)"
            )
        return size

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Attach the watcher to the module and its first optimizer."""
        optimizer = trainer.optimizers[0]
        optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer
        options = {
            "host": "lightning",
            "max_steps": trainer.estimated_stepping_batches,
            **self.options,
        }
        self.watcher = Watcher(
            pl_module,
            optimizer,
            run_dir=self.run_dir or Path(trainer.default_root_dir) / "doctor",
            batch_size=self._batch_size(trainer),
            step_hooks=False,
            **options,
        )
        for metrics in self._early_evals:  # trainer.validate() before fit(): the start
            self.watcher.evaluate(metrics, step=0)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """Gradients are final (AFTER_BACKWARD)."""
        if self.watcher is not None:
            self.watcher.before_step()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Observe training_step's outputs, then BATCH_END if the optimizer stepped."""
        if self.watcher is None:
            return
        if isinstance(outputs, Tensor):
            self.watcher.observe(outputs)
        elif isinstance(outputs, Mapping) and outputs.get("loss") is not None:
            extra = {k: outputs[k] for k in OBSERVED if outputs.get(k) is not None}
            self.watcher.observe(outputs["loss"], **extra)
        while self.watcher.step < trainer.global_step:
            self.watcher.after_step()

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Validation metrics (`val*` in `callback_metrics`); skipped in the sanity check."""
        if trainer.sanity_checking:
            return
        values = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if k.startswith(EVAL_PREFIX) and (not isinstance(v, Tensor) or v.numel() == 1)
        }
        if not values:
            return
        if self.watcher is None:
            self._early_evals.append(values)
        else:
            self.watcher.evaluate(values, step=trainer.global_step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Close the watcher: findings and files."""
        if self.watcher is None:
            return
        self.findings = self.watcher.close()
        if self.print and self.watcher.state.is_main:
            print_findings(self.findings)
