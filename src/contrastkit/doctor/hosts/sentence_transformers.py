"""The doctor in sentence-transformers' trainer: `callbacks=[SentenceTransformersDoctor(loss)]`.

`SentenceTransformerTrainer` is a Hugging Face `Trainer`, so this is the HF callback
(hosts/hf.py) with different forward hooks. sentence-transformers' losses return only
a number, so the callback reads what the loss computed from, with public hooks and no
patching:

- a forward pre-hook on the loss opens a capture window and counts its input columns
  (anchor, positive, optional negatives);
- a forward hook on the loss's model (`loss.model`, the `SentenceTransformer`) collects
  each call's `sentence_embedding` inside that window: one call per column for
  `MultipleNegativesRankingLoss` (or one merged call for the candidate columns), one per
  mini-batch and column for `CachedMultipleNegativesRankingLoss`, whose first pass runs
  without gradients inside the loss's forward (its second pass runs during backward,
  outside the window);
- a forward hook on the loss closes the window and calls `observe` with the loss, the
  first two columns' embeddings (the captured rows in call order, cut into equal column
  blocks) and `loss.scale`, the fixed multiplier of the cosine similarities (20 by
  default: temperature 0.05, not learned).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from contrastkit.doctor.hosts.hf import DoctorCallback
from contrastkit.doctor.hosts.library import host_library

host_library("sentence_transformers", "text")  # the install hint, before anything runs


class SentenceTransformersDoctor(DoctorCallback):
    """contrastkit's doctor for `SentenceTransformerTrainer` (see the module docstring).

    Args:
        loss: the loss module given to the trainer (MNRL, CachedMNRL, or any loss with
            a `model` attribute and, for the temperature rules, a `scale`).
        run_dir: where the doctor's files go (default: `<output_dir>/doctor`).
        towers: names of the first two columns (default `("anchor", "positive")`).
        pretrained: the model is a pretrained checkpoint (default True: fine-tuning).
        **options: the rest of `DoctorCallback`'s arguments.
    """

    host = "sentence_transformers"

    def __init__(
        self,
        loss: nn.Module,
        run_dir: str | Path | None = None,
        *,
        towers: tuple[str, str] = ("anchor", "positive"),
        pretrained: bool = True,
        **options: Any,
    ) -> None:
        if not isinstance(getattr(loss, "model", None), nn.Module):
            raise ValueError(
                f"SentenceTransformersDoctor(loss=...): {type(loss).__name__} has no `model` "
                "module to read embeddings from; pass the loss given to the trainer"
            )
        super().__init__(run_dir, towers=towers, pretrained=pretrained, **options)
        self.loss = loss
        self._captured: list[Tensor] | None = None
        self._columns = 0

    def watcher_options(self, args: Any, state: Any, model: nn.Module) -> dict[str, Any]:
        """The HF options, with MNRL's fixed softmax scale: clip, not learnable."""
        options = super().watcher_options(args, state, model)
        options.update(objective="clip", learnable_temperature=False)
        scale = getattr(self.loss, "scale", None)
        if isinstance(scale, int | float) and scale > 0:
            options["temperature"] = 1.0 / float(scale)
        return options

    def install_hooks(self, model: nn.Module) -> list[Any]:
        """The loss's pre/post hooks and its model's forward hook (module docstring)."""
        encoder = cast(nn.Module, self.loss.model)
        return [
            self.loss.register_forward_pre_hook(self._open),
            encoder.register_forward_hook(self._collect),
            self.loss.register_forward_hook(self._on_loss),
        ]

    def _open(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        encoder = cast(nn.Module, self.loss.model)
        if not torch.is_grad_enabled() or not encoder.training:
            return  # evaluation losses are not training steps
        self._captured = []
        self._columns = len(list(inputs[0])) if inputs else 0

    def _collect(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self._captured is not None and isinstance(output, dict):
            emb = output.get("sentence_embedding")
            if isinstance(emb, Tensor):
                self._captured.append(emb.detach())

    def _on_loss(self, module: nn.Module, inputs: Any, output: Any) -> None:
        captured, self._captured = self._captured, None
        if captured is None or self.watcher is None:
            return
        loss = torch.stack(list(output.values())).sum() if isinstance(output, dict) else output
        embeddings = None
        rows = torch.cat(captured) if captured else None
        if rows is not None and self._columns >= 2 and rows.shape[0] % self._columns == 0:
            blocks = rows.reshape(self._columns, -1, rows.shape[-1])
            embeddings = (blocks[0], blocks[1])
        scale = getattr(self.loss, "scale", None)
        self.watcher.observe(
            loss,
            embeddings=embeddings,
            logit_scale=float(scale) if isinstance(scale, int | float) else None,
        )
        self._forward_loss = True
