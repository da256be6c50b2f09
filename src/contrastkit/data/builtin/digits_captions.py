"""`builtin:digits-captions`: real handwritten digits with 5 generated captions each.

Real: the 1,797 8x8 handwritten digits (UCI, via scikit-learn's `load_digits`, which ships
with scikit-learn and needs no download), stored as 8x8 float32 .npy arrays in [0, 1];
the image reader resizes them to `data.image.size`.

Generated: the captions. Each image gets 5 captions (one group per image, like
Flickr30k), built from properties *measured on that image's pixels*, so a caption
describes that image and not only its class:

- stroke thickness: total ink, in tertiles within the image's digit class (thin/medium/thick);
- slant: -cov(x, y) / var(y) of the ink (rightward lean positive), |s| > 0.07 counts as slanted;
- width: columns with ink > 0.25 (<= 4 narrow, 5 medium, >= 6 wide);
- horizontal / vertical position of the centre of mass, in tertiles over the dataset;
- tone: mean value of the inked pixels, in tertiles over the dataset (faint/grey/dark).

Each caption states the digit and four or five of these, in one of six templates with
synonyms drawn by a generator seeded by (image, caption). label = the digit. Splits are by
image: 70 / 10 / 20 % from a permutation seeded by `seed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.builtin.cache import write_manifest

NAME = "digits-captions"
VERSION = 2
DEFAULTS: dict[str, Any] = {"seed": 0, "captions_per_image": 5, "max_images": None}

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICK = (
    ("thin", "fine", "light"),
    ("medium-weight", "regular", "moderate"),
    ("thick", "heavy", "bold"),
)
SLANT = (
    ("leaning left", "slanted to the left", "tilted left"),
    ("upright", "straight", "vertical"),
    ("leaning right", "slanted to the right", "tilted right"),
)
WIDTH = (
    ("narrow", "slim", "compact"),
    ("medium-width", "normal-width", "mid-width"),
    ("wide", "broad", "spread-out"),
)
XPOS = (
    ("left of centre", "towards the left", "on the left side"),
    ("horizontally centred", "in the horizontal middle", "centred left to right"),
    ("right of centre", "towards the right", "on the right side"),
)
YPOS = (
    ("high in the frame", "towards the top", "in the upper part"),
    ("at mid height", "vertically centred", "in the middle band"),
    ("low in the frame", "towards the bottom", "in the lower part"),
)
TONE = (
    ("faint", "pale", "washed-out"),
    ("grey", "mid-tone", "greyish"),
    ("dark", "deep black", "strongly inked"),
)
TEMPLATES = (
    "a {thick}, {width} handwritten {digit}, {slant}, drawn {xpos}.",
    "the digit {digit} in {tone} {thick} strokes, {slant} and sitting {ypos}.",
    "{numeral}, handwritten {width} and {tone}, placed {xpos} and {ypos}.",
    "a {tone} {digit} that is {slant}, with {thick} lines, {ypos}.",
    "{numeral} written {slant}; the strokes are {thick} and {tone}, {xpos}.",
    "a {width} {digit} {ypos}, {xpos}, in {thick} ink.",
)


def _tertile(values: np.ndarray) -> np.ndarray:
    """0 / 1 / 2 by the 1/3 and 2/3 quantiles of `values`."""
    lo, hi = np.quantile(values, [1 / 3, 2 / 3])
    return (values > lo).astype(np.int64) + (values > hi).astype(np.int64)


def measure(images: np.ndarray, digits: np.ndarray) -> dict[str, np.ndarray]:
    """Bucketed properties (0/1/2 per image) of N x 8 x 8 images in [0, 1]."""
    ys, xs = np.mgrid[0 : images.shape[1], 0 : images.shape[2]]
    ink = images.sum(axis=(1, 2))
    cx = (images * xs).sum(axis=(1, 2)) / ink
    cy = (images * ys).sum(axis=(1, 2)) / ink
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    slant = -(images * dx * dy).sum(axis=(1, 2)) / (images * dy**2).sum(axis=(1, 2))
    width = (images.max(axis=1) > 0.25).sum(axis=1)
    tone = np.array([im[im > 0].mean() for im in images])
    thick = np.zeros(len(images), dtype=np.int64)
    for d in np.unique(digits):  # thickness relative to the same digit
        thick[digits == d] = _tertile(ink[digits == d])
    return {
        "thick": thick,
        "slant": np.digitize(slant, [-0.07, 0.07]),
        "width": np.digitize(width, [4.5, 5.5]),
        "xpos": _tertile(cx),
        "ypos": _tertile(cy),
        "tone": _tertile(tone),
    }


REDRAWS = 20


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _norm(text: str) -> str:
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def captions_for(
    digit: int,
    props: dict[str, int],
    n: int,
    rng: np.random.Generator,
    avoid: set[str] | None = None,
) -> list[str]:
    """`n` captions of one image, cycling through the templates from a random start.

    A caption whose normalised text is in `avoid` (another image's caption) is drawn again,
    up to `REDRAWS` times: an identical caption under two images would make a positive of
    one the negative of the other.
    """
    words = {
        "thick": THICK,
        "slant": SLANT,
        "width": WIDTH,
        "xpos": XPOS,
        "ypos": YPOS,
        "tone": TONE,
    }
    start = int(rng.integers(len(TEMPLATES)))
    out = []
    for k in range(n):
        fill = {key: _pick(words[key][props[key]], rng) for key in words}
        fill["digit"] = _pick((DIGIT_WORDS[digit], str(digit)), rng)
        fill["numeral"] = _pick(
            (f"the number {DIGIT_WORDS[digit]}", f"{'an' if digit == 8 else 'a'} {digit}"), rng
        )
        caption = TEMPLATES[(start + k) % len(TEMPLATES)].format(**fill)
        for retry in range(REDRAWS):
            if avoid is None or _norm(caption) not in avoid:
                break
            fill = {key: _pick(words[key][props[key]], rng) for key in words}
            fill["digit"] = _pick((DIGIT_WORDS[digit], str(digit)), rng)
            fill["numeral"] = _pick(
                (f"the number {DIGIT_WORDS[digit]}", f"{'an' if digit == 8 else 'a'} {digit}"),
                rng,
            )
            caption = TEMPLATES[(start + k + retry + 1) % len(TEMPLATES)].format(**fill)
        out.append(caption)
    return out


def generate(folder: Path, options: dict[str, Any]) -> None:
    """Write images/NNNN.npy and manifest.jsonl into `folder`."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    digits = data.target.astype(np.int64)
    if options["max_images"] is not None:
        images, digits = images[: options["max_images"]], digits[: options["max_images"]]
    props = measure(images, digits)
    order = np.random.default_rng(options["seed"]).permutation(len(images))
    split = np.empty(len(images), dtype=object)
    n_train, n_val = round(0.7 * len(images)), round(0.1 * len(images))
    split[order[:n_train]], split[order[n_train : n_train + n_val]] = "train", "val"
    split[order[n_train + n_val :]] = "test"
    (folder / "images").mkdir()
    rows = []
    taken: set[str] = set()
    for i, (image, digit) in enumerate(zip(images, digits, strict=True)):
        np.save(folder / "images" / f"{i:04d}.npy", image)
        rng = np.random.default_rng([options["seed"], i])
        image_props = {key: int(v[i]) for key, v in props.items()}
        captions = captions_for(
            int(digit), image_props, options["captions_per_image"], rng, avoid=taken
        )
        taken.update(_norm(c) for c in captions)
        for k, caption in enumerate(captions):
            rows.append(
                {
                    "id": f"digit{i:04d}-c{k}",
                    "group": f"digit{i:04d}",
                    "split": split[i],
                    "image": f"images/{i:04d}.npy",
                    "text": caption,
                    "label": int(digit),
                }
            )
    write_manifest(folder, rows)
