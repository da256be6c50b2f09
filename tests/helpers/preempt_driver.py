"""A real `contrastkit train` process that receives a real signal at a chosen step.

`PYTHONPATH=tests python tests/helpers/preempt_driver.py STEP SIGNAL ARGS...` runs
`contrastkit ARGS...` and, at the end of optimizer step STEP (after the step's phase
switch, before the engine's checkpoint decision), sends itself SIGNAL (`TERM`, `USR1`)
with `os.kill`: the kernel delivers it like a scheduler's. A signal sent from outside
lands at an unpredictable step; this one lands mid-epoch, the same place in every run,
so the test compares against an uninterrupted run. Exits with the command's exit code.
"""

from __future__ import annotations

import os
import signal
import sys

from contrastkit.app.cli import main
from contrastkit.train.engine import Engine


def _arm(step: int, signum: int) -> None:
    real = Engine._sync_phase

    def sync_phase(self) -> None:
        real(self)
        if self.state.step == step:
            os.kill(os.getpid(), signum)

    Engine._sync_phase = sync_phase  # type: ignore[method-assign]


if __name__ == "__main__":
    _arm(int(sys.argv[1]), getattr(signal, f"SIG{sys.argv[2]}"))
    sys.exit(main(sys.argv[3:]))
