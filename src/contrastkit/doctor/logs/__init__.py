"""Post-hoc diagnosis from other tools' logs (`contrastkit doctor logs PATH`).

Readers per format (`tensorboard`, `trainer_state`, `tables`), found under PATH by
`discover`; `tags` maps each host's tag names (and `--map`) onto the doctor's signals;
`records` builds the signal records; `diagnosis` runs the same rules as a contrastkit
run through `diagnose`; `coverage` lists the rules a log cannot feed and what they need.
"""

from contrastkit.doctor.logs.coverage import NotRun
from contrastkit.doctor.logs.diagnosis import (
    LogsDiagnosis,
    default_out,
    diagnose_logs,
    write_outputs,
)

__all__ = ["LogsDiagnosis", "NotRun", "default_out", "diagnose_logs", "write_outputs"]
