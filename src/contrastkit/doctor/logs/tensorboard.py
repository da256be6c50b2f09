"""TensorBoard event folders, read with tensorboard's own `EventAccumulator`.

A folder holding `events.out.tfevents.*` files is one log (TensorBoard merges the files
of one folder into one run). Scalars written with `add_scalar` come back as `scalars`;
TF2-style summaries (`new_style=True`) as 0-d `tensors`, read too.
"""

from __future__ import annotations

from pathlib import Path

from contrastkit.doctor.logs.open_clip_params import apply_params
from contrastkit.doctor.logs.source import LIGHTNING, OPEN_CLIP, PLAIN, LogSource, host_by_tags
from contrastkit.errors import DataError

EVENTS_GLOB = "events.out.tfevents.*"
LIGHTNING_HPARAMS = "hparams.yaml"


def is_event_folder(path: Path) -> bool:
    """A folder holding at least one event file."""
    return path.is_dir() and any(p.is_file() for p in path.glob(EVENTS_GLOB))


def read_tensorboard(folder: Path) -> LogSource:
    """The scalars of one event folder.

    Raises:
        DataError: tensorboard cannot read the folder's event files.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    # size_guidance 0 = keep every point (the default samples 10,000 per tag).
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    try:
        acc.Reload()
    except Exception as err:  # tensorboard raises its own DataLossError, OSError, ...
        raise DataError(f"{folder}: cannot read its TensorBoard event files ({err})") from err
    tags = acc.Tags()
    source = LogSource(folder, "tensorboard", PLAIN)
    for tag in tags.get("scalars", []):
        for event in acc.Scalars(tag):
            source.add(tag, event.step, event.value)
    for tag in tags.get("tensors", []):
        for event in acc.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.ndim == 0 and value.dtype.kind in "fiu":
                source.add(tag, event.step, float(value))
    source.host = host_by_tags(source.scalars)
    if source.host == PLAIN and (folder / LIGHTNING_HPARAMS).is_file():
        source.host = LIGHTNING  # TensorBoardLogger writes it beside its event file
    if source.host == OPEN_CLIP:  # its val/* go to TensorBoard at the epoch number
        source.val_on_epochs = True
        apply_params(source, folder)
    return source.finish()
