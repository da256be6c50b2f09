"""One log file or folder as read: its format, the host that wrote it and its scalars.

Every reader returns a `LogSource`: `scalars` maps the tag exactly as the host wrote it
(`train/loss`, `eval_loss`, `val_acc`) to its (step, value) points in step order. The
readers do not interpret tags; `tags.py` decides which tag feeds which doctor signal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

Series = list[tuple[int, float]]

# The hosts whose tag names and config words the doctor knows (tags.py, fixes.py).
OPEN_CLIP, HF_TRAINER, LIGHTNING, PLAIN = "open_clip", "hf_trainer", "lightning", "plain"
# Tags only open_clip's training script writes (train.py's log_data, to TensorBoard and
# W&B alike): its temperature and its per-term losses. One of them identifies the host.
OPEN_CLIP_MARKS = ("train/scale", "train/logit_scale", "train/contrastive_loss")
# The Hugging Face Trainer's TensorBoard / W&B callbacks rewrite `learning_rate` as this.
HF_MARKS = ("train/learning_rate",)


def host_by_tags(tags: Iterable[str]) -> str:
    """The host whose own tags are among `tags` (PLAIN when none is)."""
    tags = set(tags)
    if tags & set(OPEN_CLIP_MARKS):
        return OPEN_CLIP
    return HF_TRAINER if tags & set(HF_MARKS) else PLAIN


@dataclass
class LogSource:
    """The scalars of one log.

    Attributes:
        path: the event folder or file that was read.
        format: tensorboard | open_clip_log | trainer_state | lightning_csv | jsonl | csv.
        host: the tool whose tag names apply (OPEN_CLIP, HF_TRAINER, LIGHTNING, PLAIN).
        scalars: tag -> (step, value) points, sorted by step; NaN / Inf kept (the NaN rule
            needs them).
        batch_size: the rows per contrastive batch when the log records it (HF's
            trainer_state.json `train_batch_size`, open_clip's params.txt), else None.
        batch_note: where `batch_size` comes from, for the output's notes.
        warmup_steps: the host's warm-up when recorded (open_clip's `--warmup`).
        notes: what the reader assumed or dropped, for the output's notes.
        val_on_epochs: validation tags whose x axis is the epoch, not the step
            (open_clip logs `val/*` at the epoch number).
    """

    path: Path
    format: str
    host: str
    scalars: dict[str, Series] = field(default_factory=dict)
    batch_size: int | None = None
    batch_note: str = ""
    warmup_steps: int | None = None
    notes: list[str] = field(default_factory=list)
    val_on_epochs: bool = False

    def add(self, tag: str, step: int, value: float) -> None:
        """Append one point (callers add in file order; `finish` sorts)."""
        self.scalars.setdefault(tag, []).append((int(step), float(value)))

    def finish(self) -> LogSource:
        """Sort every series by step (stable: a re-logged step keeps its file order)."""
        for points in self.scalars.values():
            points.sort(key=lambda p: p[0])
        return self


def as_number(value: object) -> float | None:
    """A logged cell as a float: numbers and numeric strings ("nan" and "inf" included),
    None for blanks, booleans and text (a column that holds a name, not a scalar)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_step(value: object) -> int | None:
    """A step cell as an int: 12, 12.0 and "12" are step 12; anything else is None."""
    number = as_number(value)
    if number is None or not math.isfinite(number) or number != int(number):
        return None
    return int(number)
