"""Small inline pictures of a manifest row's inputs for the report: PNG data URIs.

Media are read again from their files at thumbnail size (not at the model's input size),
so a 512 px photo shrinks with antialiasing and an 8 px digit is upsampled smoothly.
Every picture is a PNG at most `THUMB_PX` on its longest side per frame: at ~2-6 KiB
each, the report's ~100 pictures stay well under its 5 MB budget.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from contrastkit.data.arrays import read_sequence
from contrastkit.data.images import read_image
from contrastkit.data.manifest import is_text_column
from contrastkit.data.media import MediaError
from contrastkit.data.video import read_clip

THUMB_PX = 64  # image thumbnail side, pixels: digits and charts stay legible at 64
FRAME_PX = 48  # one video frame in a strip, pixels
STRIP_FRAMES = 6  # frames per video strip, evenly spaced over the clip
SEQ_PX = 72  # keypoint plot side, pixels
TEXT_CHARS = 240  # longer texts are cut (the full text is in the manifest)


def png_uri(pixels: np.ndarray) -> str:
    """H x W or H x W x 3 array in [0, 1] -> `data:image/png;base64,...`."""
    arr = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _display(chw: Any) -> np.ndarray:
    """C x H x W tensor normalised to [-1, 1] (the readers' convention) -> H x W [x 3]."""
    x = (chw.float().numpy() * 0.5) + 0.5
    return x[0] if x.shape[0] == 1 else np.transpose(x[:3], (1, 2, 0))


def image_thumb(path: Path) -> str:
    """An image file as a `THUMB_PX` square PNG data URI."""
    return png_uri(_display(read_image(path, THUMB_PX, 3)))


def video_strip(paths: Path | tuple[Path, ...]) -> str:
    """A strip of `STRIP_FRAMES` frames; a multi-view study shows the first frame of each view."""
    if isinstance(paths, tuple) and len(paths) > 1:
        frames = [read_clip(p, 1, FRAME_PX, 3)[0] for p in paths[:STRIP_FRAMES]]
    else:
        path = paths[0] if isinstance(paths, tuple) else paths
        frames = list(read_clip(path, STRIP_FRAMES, FRAME_PX, 3))
    gap = np.ones((FRAME_PX, 2, 3), dtype=np.float32)
    parts: list[np.ndarray] = []
    for frame in frames:
        parts += [_display(frame), gap]
    return png_uri(np.concatenate(parts[:-1], axis=1))


def sequence_plot(path: Path) -> str:
    """Keypoint trajectories (T x J x C, x and y from the first two channels), coloured
    from blue (first frame) to red (last), drawn with PIL: no figure per thumbnail."""
    seq = read_sequence(path, max_length=10_000).numpy()
    if seq.shape[2] < 2:  # one channel per joint: plot it against time
        t = np.broadcast_to(np.linspace(0, 1, seq.shape[0])[:, None], seq.shape[:2])
        xy = np.stack([t, seq[..., 0]], axis=-1)
    else:
        xy = seq[..., :2]
    finite = xy[np.isfinite(xy).all(axis=-1)]
    img = Image.new("RGB", (SEQ_PX, SEQ_PX), "white")
    if len(finite):
        lo, hi = finite.min(axis=0), finite.max(axis=0)
        scale = (SEQ_PX - 8) / max(float((hi - lo).max()), 1e-9)
        draw = ImageDraw.Draw(img)
        steps = len(xy)
        for ti, frame in enumerate(xy):
            red = int(255 * ti / max(steps - 1, 1))
            for x, y in frame:
                if np.isfinite(x) and np.isfinite(y):
                    px, py = 4 + (x - lo[0]) * scale, 4 + (y - lo[1]) * scale
                    draw.point((px, py), fill=(red, 40, 255 - red))
    return png_uri(np.asarray(img, dtype=np.float32) / 255.0)


def render_inputs(row: Any, columns: list[str]) -> str:
    """HTML for a row's inputs: thumbnails for media, escaped text for text columns.

    A file that cannot be read shows its error instead of failing the whole report.
    """
    out = []
    for column in columns:
        value = row.values.get(column)
        path = row.paths.get(column)
        try:
            if is_text_column(column):
                text = str(value)
                text = text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"
                out.append(f"<div class='txt'>{html.escape(text)}</div>")
            elif column == "image" and path is not None:
                out.append(f"<img class='th' alt='image' src='{image_thumb(path)}'>")
            elif column == "video" and path is not None:
                out.append(f"<img class='strip' alt='video' src='{video_strip(path)}'>")
            elif column == "sequence" and path is not None:
                out.append(f"<img class='th' alt='sequence' src='{sequence_plot(path)}'>")
            elif value is not None:
                shown = str(value)
                out.append(f"<div class='txt dim'>{column}: {html.escape(shown[:80])}</div>")
        except (MediaError, OSError, ValueError) as err:
            out.append(f"<div class='txt dim'>{column}: unreadable ({html.escape(str(err))})</div>")
    return "".join(out)
