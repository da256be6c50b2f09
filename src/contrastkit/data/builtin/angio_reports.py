"""`builtin:angio-reports`: synthetic angiography-like cine clips with their reports.

Everything here is generated (no patient data): each study has 1-2 views; each view is a
T x H x W uint8 clip of a dark vessel-like tube on a bright, noisy background, with
contrast filling the vessel from its origin over the clip, as in a real angiogram. The
vessel has a stenosis of known severity (30-90 % in steps of 10: the tube's *diameter* is
reduced by that percentage) at a known segment (proximal / mid / distal: 20 / 50 / 80 %
along the vessel) of a known artery (LAD / LCx / RCA, which sets the vessel's course).
The two views of a study are the same lesion seen from two angles (mirrored course,
different wobble and noise).

The report is the ground truth in words, e.g. "70% stenosis of the proximal LAD. No
significant disease of the RCA." Many studies share one finding and so one report word for
word; such studies are positives of each other, so group = the report (all studies with
that finding), not the study -- grouping by study would make identical reports negatives
of each other, the false-negative bug the data doctor flags. label = the diseased artery;
attributes = [severity / 100, segment index / 2]. Splits by group (report): 70 / 15 / 15 %,
so no report appears in two splits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.builtin.cache import write_manifest

NAME = "angio-reports"
VERSION = 3  # 3: lesion length 0.04 -> 0.1 (LESION_LENGTH)
DEFAULTS: dict[str, Any] = {"n_studies": 600, "frames": 8, "size": 32, "max_views": 2, "seed": 0}
ARTERIES = ("LAD", "LCx", "RCA")
SEGMENTS = ("proximal", "mid", "distal")
SEGMENT_POSITION = (0.2, 0.5, 0.8)
SEVERITIES = tuple(range(30, 100, 10))
# Half-length of the narrowing, as a fraction of the vessel (Gaussian 1/e half-width).
# Version 2 used 0.04: under one pixel at the 16 px the example trains at, so a 10-point
# severity step changed a single pixel by about twice the noise and no model could read
# the severity (or the segment) from the clip. 0.1 is ~1.5 px at 16 px, and a focal
# lesion of ~10% of the vessel's length is what a coronary stenosis looks like.
LESION_LENGTH = 0.1


def vessel_path(artery: int, view: int, rng: np.random.Generator, n: int = 160) -> np.ndarray:
    """n x 2 points (x, y in [0, 1]) along the vessel; the course depends on the artery."""
    t = np.linspace(0.0, 1.0, n)
    wobble = 0.06 * np.sin(2 * np.pi * (t * rng.uniform(0.8, 1.6) + rng.uniform()))
    if artery == 0:  # LAD: down the front, roughly diagonal
        x, y = 0.25 + 0.5 * t + wobble, 0.1 + 0.8 * t
    elif artery == 1:  # LCx: curls round to the side
        x, y = 0.2 + 0.6 * np.sin(t * np.pi / 2) + wobble, 0.15 + 0.5 * (1 - np.cos(t * np.pi / 2))
    else:  # RCA: C-shaped
        x, y = 0.5 + 0.3 * np.cos(np.pi * (0.5 + t)) + wobble, 0.1 + 0.8 * t
    points = np.stack([x, y], axis=1)
    if view == 1:
        points[:, 0] = 1.0 - points[:, 0]
    return points


def render_view(
    artery: int,
    segment: int,
    severity: int,
    view: int,
    frames: int,
    size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """frames x size x size uint8 clip: bright background, dark contrast-filled vessel."""
    path = vessel_path(artery, view, rng) * (size - 1)
    t = np.linspace(0.0, 1.0, len(path))
    radius = (
        size
        * 0.07
        * (
            1.0
            - (severity / 100.0) * np.exp(-(((t - SEGMENT_POSITION[segment]) / LESION_LENGTH) ** 2))
        )
    )
    ys, xs = np.mgrid[0:size, 0:size]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    dist = np.linalg.norm(pixels[:, None, :] - path[None, :, :], axis=2)  # P x n
    nearest = dist.argmin(axis=1)
    # Soft edge: 1 inside the local radius, 0 one pixel outside it.
    inside = np.clip(radius[nearest] + 0.5 - dist[np.arange(len(pixels)), nearest], 0.0, 1.0)
    background = 0.75 + 0.1 * (ys / size) + rng.normal(0.0, 0.03, (size, size))
    clip = np.empty((frames, size, size))
    for f in range(frames):
        fill = 1.3 * (f + 1) / frames  # contrast reaches the distal end before the last frame
        filled = inside * (t[nearest] <= fill)
        frame = background - 0.55 * filled.reshape(size, size)
        clip[f] = frame + rng.normal(0.0, 0.04, (size, size))
    return (np.clip(clip, 0.0, 1.0) * 255).round().astype(np.uint8)


def report(artery: int, segment: int, severity: int, rng: np.random.Generator) -> str:
    """The report sentence for one lesion, sometimes with a distractor clause about another artery."""
    text = f"{severity}% stenosis of the {SEGMENTS[segment]} {ARTERIES[artery]}."
    others = [a for i, a in enumerate(ARTERIES) if i != artery]
    if rng.random() < 0.5:
        text += f" No significant disease of the {others[int(rng.integers(2))]}."
    return text


def generate(folder: Path, options: dict[str, Any]) -> None:
    """Write clips/<study>_v<k>.npy and manifest.jsonl into `folder`."""
    n = options["n_studies"]
    (folder / "clips").mkdir()
    rows = []
    for s in range(n):
        rng = np.random.default_rng([options["seed"], 0, s])
        artery, segment = int(rng.integers(3)), int(rng.integers(3))
        severity = int(rng.choice(SEVERITIES))
        views = []
        for v in range(int(rng.integers(1, options["max_views"] + 1))):
            clip = render_view(
                artery, segment, severity, v, options["frames"], options["size"], rng
            )
            name = f"clips/study{s:04d}_v{v}.npy"
            np.save(folder / name, clip)
            views.append(name)
        rows.append(
            {
                "id": f"study{s:04d}",
                "video": views if len(views) > 1 else views[0],
                "text": report(artery, segment, severity, rng),
                "label": ARTERIES[artery],
                "attributes": [severity / 100.0, segment / 2.0],
            }
        )
    reports = sorted({r["text"] for r in rows})
    group_of = {t: f"report{i:03d}" for i, t in enumerate(reports)}
    order = np.random.default_rng([options["seed"], 1]).permutation(len(reports))
    cut_train, cut_val = round(0.7 * len(reports)), round(0.85 * len(reports))
    split_of = {
        reports[int(j)]: "train" if k < cut_train else "val" if k < cut_val else "test"
        for k, j in enumerate(order)
    }
    for r in rows:
        r["group"] = group_of[r["text"]]
        r["split"] = split_of[r["text"]]
    write_manifest(
        folder, [{"id": r["id"], "group": r["group"], "split": r["split"], **r} for r in rows]
    )
