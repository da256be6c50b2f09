"""open_clip's text log `out.log`, written by every run (TensorBoard only with
`--report-to tensorboard`).

Two kinds of lines are read (open_clip_train/train.py):

    ... | INFO | Train Epoch: 0 [ 4096/2916352 (0%)] Data (t): 1.875 Batch (t): 5.601, 731.3/s,
        731.3/s/gpu LR: 0.000005 Logit Scale: 14.286 Contrastive_loss: 8.3164 (8.3164) Loss: ...
    ... | INFO | Eval Epoch: 1 image_to_text_R@1: 0.1234<TAB>clip_val_loss: 2.3456<TAB>...

A train line has no step, only the samples seen in the epoch. open_clip logs each
epoch's first optimizer step, whose sample count is the rows of one step (all GPUs and
`--accum-freq` micro-batches: B, the contrastive batch), so the step is
epoch x steps_per_epoch + samples / B - 1, with steps_per_epoch = samples_per_epoch / B
rounded. The scalars become the TensorBoard tags open_clip would have written
(`train/loss`, `train/scale`, `train/lr`, `val/<metric>` at the epoch), so the rest of
the pipeline treats both alike.

`LR:` is printed with 6 decimals: a rate below 5e-7 prints as 0.000000, so a column of
zeros says "below 5e-7", not "zero", and is dropped (`lr_zero` then does not run).
"""

from __future__ import annotations

import re
from pathlib import Path

from contrastkit.doctor.logs.open_clip_params import apply_params
from contrastkit.doctor.logs.source import OPEN_CLIP, LogSource
from contrastkit.errors import DataError

FILE_NAME = "out.log"
_TRAIN = re.compile(r"Train Epoch: (\d+) \[\s*(\d+)/(\d+) \(\s*[\d.]+%\)\](.*)$")
_EVAL = re.compile(r"Eval Epoch: (\d+) ([^\[].*)$")
_LR = re.compile(r"LR: (\S+)")
_SCALE = re.compile(r"Logit Scale: (\S+)")
# "Contrastive_loss: 8.3164 (8.3164)": open_clip prints name.capitalize(): value (average).
_LOSS = re.compile(r"\b([A-Z][a-z_]*): (\S+) \(\S+\)")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _train_values(rest: str) -> dict[str, float]:
    """The losses, LR and logit scale of a train line, under open_clip's TensorBoard tags."""
    values: dict[str, float] = {}
    for name, text in _LOSS.findall(rest):
        number = _number(text)
        if name.lower().endswith("loss") and number is not None:
            values[f"train/{name.lower()}"] = number
    for key, pattern in (("train/lr", _LR), ("train/scale", _SCALE)):
        found = pattern.search(rest)
        number = _number(found[1]) if found else None
        if number is not None:
            values[key] = number
    return values


def read_out_log(path: Path) -> LogSource:
    """The train and eval lines of an open_clip `out.log`.

    Raises:
        DataError: unreadable, or no train / eval line in it.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"{path}: not readable ({err})") from err
    source = LogSource(path, "open_clip_log", OPEN_CLIP, val_on_epochs=True)
    rows: list[tuple[int, int, int, dict[str, float]]] = []
    step_rows: dict[int, int] = {}  # epoch -> samples of its first logged line
    for line in lines:
        m = _TRAIN.search(line)
        if m:
            epoch, seen = int(m[1]), int(m[2])
            step_rows.setdefault(epoch, seen)
            rows.append((epoch, seen, int(m[3]), _train_values(m[4])))
            continue
        m = _EVAL.search(line)
        for item in m[2].split("\t") if m else []:
            name, sep, text = item.partition(": ")
            number = _number(text) if sep else None
            if m and number is not None:
                source.add(f"val/{name.strip()}", int(m[1]), number)
    if not rows and not source.scalars:
        raise DataError(f"{path}: no 'Train Epoch' or 'Eval Epoch' line of open_clip's log")
    if rows:
        _add_train(source, rows, min(step_rows.values()))
    apply_params(source, path.parent)  # params.txt beside it, when present, states B exactly
    return source.finish()


def _add_train(
    source: LogSource, rows: list[tuple[int, int, int, dict[str, float]]], rows_per_step: int
) -> None:
    """Place each train line at its step (see the module docstring) and record B."""
    source.batch_size = rows_per_step
    source.batch_note = (
        f"batch size {rows_per_step}: the samples of the first logged step in {source.path}"
    )
    for epoch, seen, per_epoch, values in rows:
        steps_per_epoch = max(round(per_epoch / rows_per_step), 1)
        step = epoch * steps_per_epoch + max(seen // rows_per_step, 1) - 1
        for key, value in values.items():
            source.add(key, step, value)
    lrs = source.scalars.get("train/lr", [])
    if lrs and all(v == 0 for _, v in lrs):
        del source.scalars["train/lr"]
        source.notes.append(f"{source.path}: LR printed as 0.000000 throughout (< 5e-7): not read")
