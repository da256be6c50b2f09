"""Find and read the logs under PATH: a file, an event folder, or a run's folder.

A file is read by its kind (`trainer_state.json`, open_clip's `out.log`, `*.csv`,
`*.jsonl`, an event file); a folder is searched (hidden folders skipped) for event
folders, `out.log`, `trainer_state.json`, `metrics.csv` and other `*.csv` / `*.jsonl`
tables. PATH is one run: its logs are merged
into one set of signals, so two event folders, two Lightning versions or two training
runs' `trainer_state.json` in one folder are refused (they would mix runs). A Hugging
Face output folder keeps one `trainer_state.json` per `checkpoint-N`; each holds the
history so far, so only the latest checkpoint's is read. Inside a folder, a table that
is not a metric log (no `step`) is skipped and reported, not an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from contrastkit.doctor.logs.open_clip_text import FILE_NAME as OUT_LOG
from contrastkit.doctor.logs.open_clip_text import read_out_log
from contrastkit.doctor.logs.source import LogSource
from contrastkit.doctor.logs.tables import LIGHTNING_FILE, read_csv_table, read_jsonl_table
from contrastkit.doctor.logs.tensorboard import EVENTS_GLOB, is_event_folder, read_tensorboard
from contrastkit.doctor.logs.trainer_state import FILE_NAME, read_trainer_state
from contrastkit.errors import DataError

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_TABLES: dict[str, Callable[[Path], LogSource]] = {
    ".csv": read_csv_table,
    ".jsonl": read_jsonl_table,
}
LOOKED_FOR = (
    "TensorBoard event files (events.out.tfevents.*), open_clip's out.log, trainer_state.json, "
    "Lightning metrics.csv, or *.csv / *.jsonl tables with a step column"
)


@dataclass
class Found:
    """The logs read under PATH, and the files skipped with the reason."""

    sources: list[LogSource] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def read_file(path: Path) -> LogSource:
    """One log file, by its kind.

    Raises:
        DataError: a kind no reader handles, or the reader's own errors.
    """
    if path.name == FILE_NAME:
        return read_trainer_state(path)
    if path.name == OUT_LOG:
        return read_out_log(path)
    if path.match(EVENTS_GLOB):
        return read_tensorboard(path.parent)
    reader = _TABLES.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: not a log the doctor reads; it reads {LOOKED_FOR}")
    return reader(path)


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _latest_states(paths: list[Path]) -> list[Path]:
    """One trainer_state.json per HF output folder: the highest checkpoint-N's."""
    best: dict[Path, tuple[int, Path]] = {}
    alone = []
    for p in paths:
        m = _CHECKPOINT.fullmatch(p.parent.name)
        if m is None:
            alone.append(p)
            continue
        n = int(m.group(1))
        if p.parent.parent not in best or n > best[p.parent.parent][0]:
            best[p.parent.parent] = (n, p)
    # A trainer_state.json beside the checkpoints (save_state at the end) is the same run.
    runs = {p.parent.parent: p for _, p in best.values()}
    for p in alone:
        runs[p.parent] = p
    return sorted(runs.values())


def _one_run(kind: str, paths: list[Path]) -> None:
    if len(paths) > 1:
        listed = ", ".join(str(p) for p in paths[:5])
        raise DataError(
            f"{len(paths)} {kind} logs found ({listed}): PATH must be one run's folder; "
            "point it at one of them"
        )


def read_folder(root: Path) -> Found:
    """Every log under `root` (see the module docstring)."""
    found = Found()
    files = sorted(p for p in root.rglob("*") if p.is_file() and _visible(p, root))
    events = sorted({p.parent for p in files if p.match(EVENTS_GLOB)})
    events = [d for d in events if is_event_folder(d)]
    states = _latest_states([p for p in files if p.name == FILE_NAME])
    lightning = [p for p in files if p.name == LIGHTNING_FILE]
    texts = [p for p in files if p.name == OUT_LOG]
    for kind, paths in (
        ("TensorBoard", events),
        (FILE_NAME, states),
        ("Lightning", lightning),
        ("open_clip out.log", texts),
    ):
        _one_run(kind, paths)
    # The text log first: it is rounded for printing, so the event file's values win
    # where both hold a step (sources read later win, see records.py).
    found.sources += [read_out_log(p) for p in texts]
    found.sources += [read_tensorboard(d) for d in events]
    found.sources += [read_trainer_state(p) for p in states]
    for p in files:
        reader = _TABLES.get(p.suffix.lower())
        if reader is None:
            continue
        try:
            found.sources.append(reader(p))
        except DataError as err:
            found.skipped.append((p, str(err)))
    return found


def find_logs(path: str | Path) -> Found:
    """The logs at `path` (a file or a folder).

    Raises:
        DataError: no such path, a file no reader handles, or no log in the folder.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        return Found([read_file(path)])
    found = read_folder(path)
    if not found.sources:
        skipped = "; ".join(f"{p.name}: {why}" for p, why in found.skipped[:3])
        raise DataError(
            f"{path}: no log the doctor reads in this folder; it looks for {LOOKED_FOR}"
            + (f". Skipped: {skipped}" if skipped else "")
        )
    return found
