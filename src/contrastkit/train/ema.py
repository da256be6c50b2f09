"""Exponential moving average of the model, the teacher for self-distillation.

An EMA teacher (Tarvainen & Valpola 2017; used as the target network in BYOL and DINO)
changes slowly, so distilling the student's embeddings towards it regularises without a
second pretrained model. When `loss.distillation.source == "ema"` the engine runs the EMA
copy (no grad, eval mode) on each micro-batch and puts its embeddings in
`output.extras["teacher:<tower>"]`, where the distillation term reads them.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from contrastkit.models.outputs import ModelOutput
from contrastkit.train.rng import capture_rng, restore_rng


class EMA:
    """A frozen copy of `model` updated as `shadow = decay * shadow + (1 - decay) * param`.

    Args:
        model: the model being trained (unwrapped from DDP).
        decay: in (0, 1); 0.999 averages over roughly the last 1000 steps.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards `model`'s; buffers are copied as they are."""
        for shadow, param in zip(self.model.parameters(), model.parameters(), strict=True):
            shadow.lerp_(param.detach(), 1.0 - self.decay)
        for shadow_buf, buf in zip(self.model.buffers(), model.buffers(), strict=True):
            shadow_buf.copy_(buf)

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow weights."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the shadow weights from a checkpoint."""
        self.model.load_state_dict(state)


class TeacherHook:
    """Adds `teacher:<tower>` embeddings from a frozen model to each model output.

    The teacher's forward runs with the RNG saved and restored, so it does not shift the
    student's dropout draws (which cached accumulation replays).
    """

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher

    @torch.no_grad()
    def __call__(self, output: ModelOutput, batch: dict) -> ModelOutput:
        """`output` with the teacher's embeddings for `batch` added to its extras."""
        state = capture_rng()
        self.teacher.eval()
        teacher_out = self.teacher(batch)
        restore_rng(state)
        for tower, emb in teacher_out.embeddings.items():
            output.extras[f"teacher:{tower}"] = emb.detach()
        return output
