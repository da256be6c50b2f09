"""Progress display: a rich bar on a terminal, plain log lines in CI, or nothing.

`train.progress: auto` picks the bar when stdout is a terminal, else plain lines every
`log_every` steps (CI logs stay readable); `none` silences both.
"""

from __future__ import annotations

import sys
import time
from typing import Literal

Mode = Literal["auto", "rich", "plain", "none"]


def _summary(metrics: dict[str, float]) -> str:
    parts = [f"epoch {int(metrics.get('epoch', 0))}", f"step {int(metrics.get('step', 0))}"]
    for key, label, fmt in (("train/loss", "loss", ".4f"), ("train/lr", "lr", ".2e")):
        if key in metrics:
            parts.append(f"{label} {metrics[key]:{fmt}}")
    scales = [v for k, v in metrics.items() if k.endswith("/logit_scale")]
    if scales:
        parts.append(f"scale {scales[0]:.2f}")
    return "  ".join(parts)


class Progress:
    """Shows training progress; `update` is called after every optimizer step.

    Args:
        mode: auto | rich | plain | none.
        total_steps: optimizer steps in the run (for the bar and ETA).
        log_every: plain mode prints every this many steps.
        is_main: only rank 0 shows anything.
    """

    def __init__(
        self, mode: Mode, total_steps: int, log_every: int, *, is_main: bool = True
    ) -> None:
        if mode == "auto":
            mode = "rich" if sys.stdout.isatty() else "plain"
        self.mode = mode if is_main else "none"
        self.total = total_steps
        self.log_every = log_every
        self.start = time.perf_counter()
        self._bar = None
        self._task = None
        if self.mode == "rich":
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn()
            )
            self._bar.start()
            self._task = self._bar.add_task("training", total=total_steps)

    def update(self, step: int, metrics: dict[str, float]) -> None:
        """Show progress at `step` (the bar, or a plain line every `log_every` steps)."""
        if self.mode == "rich" and self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, completed=step, description=_summary({**metrics, "step": step})
            )
        elif self.mode == "plain" and step % self.log_every == 0:
            elapsed = time.perf_counter() - self.start
            eta = elapsed / max(step, 1) * max(self.total - step, 0)
            print(f"{_summary({**metrics, 'step': step})}  eta {eta:.0f}s", flush=True)

    def message(self, text: str) -> None:
        """Print `text` without breaking the progress bar."""
        if self.mode == "rich" and self._bar is not None:
            self._bar.console.print(text)
        elif self.mode == "plain":
            print(text, flush=True)

    def close(self) -> None:
        """Stop the progress bar."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
