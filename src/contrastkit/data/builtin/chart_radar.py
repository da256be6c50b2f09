"""`builtin:chart-radar`: rendered radar ("groove radar") charts for chart <-> chart triplets.

Everything is generated. Each song has a 5-value attribute vector (stream, voltage, air,
freeze, chaos), each in [0, 1] (Beta(2, 2) draws). A chart is that vector drawn as a
filled pentagon on five spokes (numpy point-in-polygon), with faint spokes and render
noise: rotation +-4 degrees, centre shift +-1 px, scale 0.93-1.07 and pixel noise. Several
renders of one song share a group (they are positives); `attributes` = the 5-vector (for
attribute-scaled triplet margins); `label` = difficulty from the attribute sum
(beginner < 2.0 <= basic < 2.5 <= difficult < 3.0 <= expert). Splits by song: 70/15/15 %.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.builtin.cache import write_manifest

NAME = "chart-radar"
VERSION = 1
DEFAULTS: dict[str, Any] = {"n_songs": 300, "renders": 4, "size": 32, "seed": 0}
ATTRIBUTES = ("stream", "voltage", "air", "freeze", "chaos")
DIFFICULTIES = ("beginner", "basic", "difficult", "expert")


def inside_polygon(xs: np.ndarray, ys: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: True where (xs, ys) is inside the closed polygon `vertices` (V x 2)."""
    inside = np.zeros(xs.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        crosses = (y0 > ys) != (y1 > ys)
        x_at = x0 + (ys - y0) * (x1 - x0) / ((y1 - y0) or 1e-12)
        inside ^= crosses & (xs < x_at)
    return inside


def render(values: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """size x size float32 chart in [0, 1] of a 5-vector in [0, 1]."""
    angle0 = np.pi / 2 + np.deg2rad(rng.uniform(-4, 4))
    angles = angle0 + 2 * np.pi * np.arange(5) / 5
    centre = (size - 1) / 2 + rng.uniform(-1, 1, size=2)
    reach = 0.45 * size * rng.uniform(0.93, 1.07)
    r = reach * (0.08 + 0.92 * values)
    vertices = np.stack([centre[0] + r * np.cos(angles), centre[1] - r * np.sin(angles)], axis=1)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    image = 0.1 + 0.7 * inside_polygon(xs, ys, vertices)
    for a in angles:  # faint spokes: the chart's frame of reference
        t = np.linspace(0, reach, 4 * size)
        px = np.clip((centre[0] + t * np.cos(a)).astype(int), 0, size - 1)
        py = np.clip((centre[1] - t * np.sin(a)).astype(int), 0, size - 1)
        image[py, px] = np.maximum(image[py, px], 0.35)
    image += rng.normal(0.0, 0.03, image.shape)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def difficulty(values: np.ndarray) -> str:
    """The difficulty label of a chart, from the sum of its radar values."""
    return DIFFICULTIES[int(np.digitize(values.sum(), [2.0, 2.5, 3.0]))]


def generate(folder: Path, options: dict[str, Any]) -> None:
    """Write charts/<song>_r<k>.npy and manifest.jsonl into `folder`."""
    n = options["n_songs"]
    order = np.random.default_rng([options["seed"], 1]).permutation(n)
    split = {int(i): "train" for i in order[: round(0.7 * n)]}
    split.update({int(i): "val" for i in order[round(0.7 * n) : round(0.85 * n)]})
    (folder / "charts").mkdir()
    rows = []
    for s in range(n):
        rng = np.random.default_rng([options["seed"], 0, s])
        values = rng.beta(2.0, 2.0, size=5)
        for k in range(options["renders"]):
            name = f"charts/song{s:04d}_r{k}.npy"
            np.save(folder / name, render(values, options["size"], rng))
            rows.append(
                {
                    "id": f"song{s:04d}-r{k}",
                    "group": f"song{s:04d}",
                    "split": split.get(s, "test"),
                    "image": name,
                    "attributes": [round(float(v), 6) for v in values],
                    "label": difficulty(values),
                }
            )
    write_manifest(folder, rows)
