"""The doctor in a Hugging Face `Trainer`: one callback, `Trainer(..., callbacks=[DoctorCallback()])`.

The callback owns one `Watcher` (hosts/watcher.py) and feeds it from the Trainer's hooks:

| Trainer hook | watcher | what it gives |
|---|---|---|
| `on_train_begin` | `attach` | model, optimizer, batch size, lr, warm-up, steps |
| forward hook on the model (training only) | `observe` | the output's `loss`; a CLIP / SigLIP output's `image_embeds`, `text_embeds`, and the model's `logit_scale` (and `logit_bias`) |
| `on_pre_optimizer_step` | `before_step` | gradients (after the Trainer's clipping) |
| `on_optimizer_step` | `after_step` | lr, drift, the step count |
| `on_log` | `observe` | the logged `loss`, only when the forward output has none |
| `on_evaluate` | `evaluate` | eval metrics; one before the first step (`eval_on_start`, or `trainer.evaluate()` before `train()`) is the at-start reference |
| `on_train_end` | `close` | findings.json, signals.jsonl, training_curves.png, printed findings |

A forward hook rather than a `compute_loss` override keeps the user's Trainer untouched.
sentence-transformers' trainer is this Trainer; its loss modules get their own hooks
(hosts/sentence_transformers.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from contrastkit.doctor.hosts.library import host_library
from contrastkit.doctor.hosts.watcher import Watcher
from contrastkit.doctor.report import print_findings

transformers = host_library("transformers", "text")

# Eval keys that describe the evaluation run, not the model.
_NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch")
# Preferred selection metrics, in order: retrieval at rank 1 first (what the at-start
# comparison of a contrastive model should read), then ranking scores, then the loss.
_PREFERRED = ("accuracy@1", "recall@1", "r@1", "mrr", "ndcg", "map", "accuracy", "loss")
# Output fields of a two-tower model, first tower first (transformers' CLIP and SigLIP).
EMBEDDING_FIELDS = ("image_embeds", "text_embeds")


def pick_metric(metrics: Mapping[str, float]) -> tuple[str, str] | None:
    """The metric the at-start comparison reads, and `max` / `min` (None: no candidate)."""
    keys = [k for k in metrics if not k.endswith(_NOT_METRICS)]
    for wanted in _PREFERRED:
        for k in keys:
            if wanted in k.lower():
                return k, "min" if "loss" in k.lower() else "max"
    return (keys[0], "min" if "loss" in keys[0].lower() else "max") if keys else None


def warmup_steps(args: Any, max_steps: int) -> int:
    """The Trainer's warm-up in steps: `warmup_steps` (a float below 1 is a ratio in
    transformers 5) or `warmup_ratio` of the planned steps."""
    steps = float(getattr(args, "warmup_steps", 0) or 0)
    if 0 < steps < 1:
        return math.ceil(steps * max_steps)
    ratio = float(getattr(args, "warmup_ratio", 0.0) or 0.0)
    return int(steps) if steps >= 1 else math.ceil(ratio * max_steps)


def _field(output: Any, name: str) -> Any:
    if isinstance(output, Mapping):
        return output.get(name)
    return getattr(output, name, None)


class DoctorCallback(transformers.TrainerCallback):  # type: ignore[name-defined]  # lazily imported
    """contrastkit's doctor as a `TrainerCallback` (see the module docstring).

    Args:
        run_dir: where the doctor's files go (default: `<output_dir>/doctor`).
        batch_size: candidates per query in the loss (default: the per-device batch:
            transformers' CLIP loss does not gather across processes).
        towers: names of the two embedding sets (default: `("image", "text")`).
        select_metric: the eval metric the at-start comparison reads (default: picked
            by `pick_metric` from the first evaluation).
        pretrained: the model was loaded from pretrained weights (the at-start rules
            then name a from-scratch lr as a cause).
        every: steps between records (default 25, contrastkit's `doctor.every`).
        host: the host name the fixes are worded for.
        print_findings: print the findings table at the end of training (rank 0).
    """

    host = "hf"

    def __init__(
        self,
        run_dir: str | Path | None = None,
        *,
        batch_size: int | None = None,
        towers: tuple[str, str] = ("image", "text"),
        select_metric: str | None = None,
        pretrained: bool = False,
        every: int = 25,
        print_findings: bool = True,
    ) -> None:
        self.run_dir = run_dir
        self.batch_size = batch_size
        self.towers = towers
        self.select_metric = select_metric
        self.pretrained = pretrained
        self.every = every
        self.print = print_findings
        self.watcher: Watcher | None = None
        self.findings: list[Any] | None = None
        self._early_evals: list[dict[str, float]] = []
        self._hooks: list[Any] = []
        self._forward_loss = False

    def watcher_options(self, args: Any, state: Any, model: nn.Module) -> dict[str, Any]:
        """`attach` keyword arguments for this Trainer run (subclasses add their own)."""
        warmup = warmup_steps(args, state.max_steps)
        objective = "siglip" if isinstance(getattr(model, "logit_bias", None), Tensor) else "clip"
        amp = "fp16" if args.fp16 else "bf16" if args.bf16 else "none"
        return {
            "run_dir": self.run_dir or Path(args.output_dir) / "doctor",
            "batch_size": self.batch_size or args.per_device_train_batch_size,
            "host": self.host,
            "towers": self.towers,
            "objective": objective,
            "pretrained": self.pretrained,
            "select_metric": self.select_metric,
            "max_steps": state.max_steps,
            "warmup_steps": warmup,
            "every": self.every,
            "step_hooks": False,  # the Trainer's own optimizer-step callbacks instead
            "amp": amp,
        }

    def install_hooks(self, model: nn.Module) -> list[Any]:
        """Forward hooks that call `observe` (the HF model's own output here)."""
        return [model.register_forward_hook(self._on_forward)]

    def _on_forward(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.watcher is None or not module.training:
            return
        loss = _field(output, "loss")
        if not isinstance(loss, Tensor) or not loss.requires_grad:
            return  # evaluation, or no labels: the logged loss stands in (on_log)
        self._forward_loss = True
        pair = [_field(output, f) for f in EMBEDDING_FIELDS]
        embeddings = pair if all(isinstance(e, Tensor) for e in pair) else None
        scale = getattr(module, "logit_scale", None)
        bias = getattr(module, "logit_bias", None)
        self.watcher.observe(
            loss,
            embeddings=embeddings,
            logit_scale=scale.detach().exp() if isinstance(scale, Tensor) else None,
            logit_bias=bias.detach() if isinstance(bias, Tensor) else None,
        )

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        """Attach the watcher (the optimizer exists by now) and install the hooks."""
        if model is None or optimizer is None:
            raise ValueError(
                "DoctorCallback: the Trainer passed no model / optimizer to on_train_begin"
            )
        self.watcher = Watcher(model, optimizer, **self.watcher_options(args, state, model))
        self._hooks = self.install_hooks(model)
        for metrics in self._early_evals:  # trainer.evaluate() before train(): the start
            self._evaluate(metrics, 0)

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        """Gradients are final: AFTER_BACKWARD."""
        if self.watcher is not None:
            self.watcher.before_step()

    def on_optimizer_step(self, args, state, control, **kwargs):
        """The optimizer stepped: BATCH_END."""
        if self.watcher is not None:
            self.watcher.after_step()

    def on_log(self, args, state, control, logs=None, **kwargs):
        """The logged training loss, when the forward output carried none."""
        loss = (logs or {}).get("loss")
        if self.watcher is not None and not self._forward_loss and isinstance(loss, int | float):
            self.watcher.observe(float(loss), step=max(state.global_step - 1, 0))

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        """Evaluation metrics; before training they are the at-start reference."""
        values = {
            k: float(v)
            for k, v in (metrics or {}).items()
            if isinstance(v, int | float) and not k.endswith(_NOT_METRICS)
        }
        if not values:
            return
        if self.watcher is None:
            self._early_evals.append(values)
        else:
            self._evaluate(values, state.global_step)

    def _evaluate(self, values: dict[str, float], step: int) -> None:
        assert self.watcher is not None
        if self.watcher.select_metric is None:
            picked = pick_metric(values)
            if picked is not None:
                self.watcher.select(*picked)
        self.watcher.evaluate(values, step=step)

    def on_train_end(self, args, state, control, **kwargs):
        """Close the watcher: the findings and the run directory's files."""
        if self.watcher is None:
            return
        for h in self._hooks:
            h.remove()
        self.findings = self.watcher.close()
        if self.print and self.watcher.state.is_main:
            print_findings(self.findings)
