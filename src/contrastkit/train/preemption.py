"""Preemption: SIGTERM or SIGUSR1 end a training at a step boundary, with a checkpoint.

SLURM preemption and `scancel`, `timeout`, `docker stop` and Kubernetes eviction all end a
job with SIGTERM (then SIGKILL after a grace period); SLURM's `--signal=USR1@<seconds>`
sends SIGUSR1 ahead of the end. `PreemptionWatch` replaces the default action (die on the
spot) by recording the signal; the engine reads the record at the end of each optimizer
step, writes a checkpoint there and raises `Preempted`. The run is marked `preempted` in
run.json and the command exits with `128 + signal number` (143 for SIGTERM, 138 for
SIGUSR1: the shell's code for "ended by that signal", which schedulers and wrapper
scripts already read as "not a failure of the program"). `--resume auto` then continues
from that checkpoint exactly as if nothing had happened.

Under torchrun every rank may or may not receive the signal (torchrun forwards it, a
scheduler may signal one node first), so the ranks agree at a step boundary: the signal
number is all-reduced (max) together with the time-based checkpoint decision, one
collective per step, and every rank stops after the same step.

The handler only stores the signal number (nothing else is safe inside a signal handler).
A second signal of the same kind restores the previous action and re-sends itself, so a
user who insists (or a scheduler's second SIGTERM) still ends the process at once.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

import torch
import torch.distributed as dist

# SIGTERM: the common preemption notice; SIGUSR1: SLURM's advance notice (`--signal`).
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def exit_code(signum: int) -> int:
    """The command's exit code after a preemption by `signum`: 128 + signum (SIGTERM: 143)."""
    return 128 + int(signum)


class Preempted(Exception):  # noqa: N818 - it names the outcome, like KeyboardInterrupt
    """Training stopped on a preemption signal after writing a checkpoint.

    Not a `ContrastkitError`: it is no user error, and the CLI exits with `exit_code`.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        self.signum, self.step, self.checkpoint = int(signum), int(step), checkpoint
        name = signal.Signals(self.signum).name
        where = f"checkpoint {checkpoint}" if checkpoint else "the last checkpoint"
        super().__init__(
            f"preempted by {name} after step {step}; {where} holds the run: continue it with "
            "`contrastkit train CONFIG --run-dir RUN_DIR --resume auto`"
        )

    @property
    def exit_code(self) -> int:
        """128 + the signal number (see `exit_code`)."""
        return exit_code(self.signum)


class PreemptionWatch:
    """Record SIGTERM / SIGUSR1 instead of dying; `with PreemptionWatch() as watch:`.

    Installs only in the main thread (Python delivers signals there; elsewhere the default
    action stays). `close` puts the previous handlers back, so watches nest.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> PreemptionWatch:
        """Take over the preemption signals (no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in PREEMPT_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signum:  # asked twice: the previous action, now
            signal.signal(signum, self._previous.get(signum) or signal.SIG_DFL)  # type: ignore[arg-type]
            os.kill(os.getpid(), signum)
            return
        self.signum = signum

    def close(self) -> None:
        """Restore the handlers that were in place before `install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def agreed(self, device: torch.device) -> int | None:
        """The signal any rank received (max over ranks), or None; a collective under torchrun."""
        return agree(0.0, self.signum, device)[1]

    def __enter__(self) -> PreemptionWatch:
        return self.install()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def agree(rank0_flag: float, signum: int | None, device: torch.device) -> tuple[bool, int | None]:
    """One collective for the step-end decisions: rank 0's `rank0_flag` (e.g. its clock says
    a time-based checkpoint is due; other ranks pass what they like) and any rank's signal.

    Without a process group the inputs come back unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return bool(rank0_flag), signum
    first = float(rank0_flag) if dist.get_rank() == 0 else 0.0
    t = torch.tensor([first, float(signum or 0)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    got = int(t[1].item())
    return bool(t[0].item()), (got or None)
