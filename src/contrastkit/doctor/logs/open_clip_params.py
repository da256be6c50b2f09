"""open_clip's `params.txt`: the run's arguments, one `name: value` line each.

open_clip's main writes it into the run's log folder (`--logs`/`--name`), the parent of
its `tensorboard/` event folder. Two facts matter to the rules: the contrastive batch
and the warm-up. open_clip's loss gathers every GPU's features and `--accum-freq`
caches features over micro-batches, so each query is contrasted with
`batch_size x world_size x accum_freq` rows.
"""

from __future__ import annotations

from pathlib import Path

from contrastkit.doctor.logs.source import LogSource, as_step

FILE_NAME = "params.txt"


def read_params(path: Path) -> dict[str, str]:
    """`name: value` lines as a dict of strings (unreadable or other lines skipped)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for line in lines:
        name, sep, value = line.partition(": ")
        if sep:
            out[name.strip()] = value.strip()
    return out


def apply_params(source: LogSource, folder: Path) -> None:
    """Set `source`'s batch size and warm-up from the params.txt in `folder` or its
    parent, when there is one with an integer `batch_size`."""
    for candidate in (folder / FILE_NAME, folder.parent / FILE_NAME):
        params = read_params(candidate) if candidate.is_file() else {}
        batch = as_step(params.get("batch_size"))
        if not batch or batch < 1:
            continue
        world = as_step(params.get("world_size")) or 1
        accum = as_step(params.get("accum_freq")) or 1
        source.batch_size = batch * world * accum
        source.batch_note = (
            f"batch size {source.batch_size} = batch_size {batch} x world_size {world} x "
            f"accum_freq {accum} from {candidate}"
        )
        source.warmup_steps = as_step(params.get("warmup"))
        return
