"""`builtin:sign-keypoints`: keypoint sequences + precomputed features <-> gloss sentences.

Everything is generated. A vocabulary of 30 glosses; each gloss has a fixed motion
primitive (5-9 frames of J=12 two-dimensional keypoints moving around a base pose, a sum
of random sinusoids). A sentence (3-6 glosses) is signed by concatenating its glosses'
primitives; each of `signers` renders per sentence has its own body offset and scale, a
per-word speed factor (0.8-1.25, by linear interpolation) and keypoint noise; sequences
longer than 64 frames are resampled to 64. `features` is a per-frame "visual feature"
(N = T x F = 32): a fixed random embedding of the frame's gloss plus noise, standing in
for features from a frozen video backbone. text = the sentence; group = sentence; splits
by sentence (70 / 15 / 15 %).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from contrastkit.data.builtin.cache import write_manifest

NAME = "sign-keypoints"
VERSION = 1
DEFAULTS: dict[str, Any] = {
    "n_sentences": 200,
    "signers": 3,
    "joints": 12,
    "feature_dim": 32,
    "seed": 0,
}
MAX_FRAMES = 64
GLOSSES = (
    "i", "you", "he", "she", "we", "they", "go", "come", "eat", "drink",
    "see", "want", "like", "have", "home", "school", "work", "water", "food", "friend",
    "book", "today", "tomorrow", "yesterday", "now", "not", "yes", "good", "bad", "help",
)  # fmt: skip


def primitives(joints: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One L x J x 2 motion (offsets from the base pose) per gloss."""
    out = []
    for _ in GLOSSES:
        length = int(rng.integers(5, 10))
        t = np.linspace(0.0, 1.0, length)[:, None, None]
        amp = rng.normal(0.0, 0.15, (1, joints, 2))
        freq = rng.uniform(0.5, 2.0, (1, joints, 2))
        phase = rng.uniform(0, 2 * np.pi, (1, joints, 2))
        out.append(amp * np.sin(2 * np.pi * freq * t + phase))
    return out


def resample(motion: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of an L x ... array to `length` frames."""
    src = np.linspace(0.0, 1.0, len(motion))
    dst = np.linspace(0.0, 1.0, length)
    flat = motion.reshape(len(motion), -1)
    return np.stack(
        [np.interp(dst, src, flat[:, k]) for k in range(flat.shape[1])], axis=1
    ).reshape(length, *motion.shape[1:])


def sentences(n: int, rng: np.random.Generator) -> list[tuple[int, ...]]:
    """n distinct gloss-index sentences of 3-6 words."""
    seen: dict[tuple[int, ...], None] = {}
    while len(seen) < n:
        words = tuple(int(w) for w in rng.integers(len(GLOSSES), size=int(rng.integers(3, 7))))
        seen.setdefault(words, None)
    return list(seen)


def sign(
    words: tuple[int, ...], prims: list[np.ndarray], base: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(T x J x 2 keypoints, T gloss index per frame) for one signer's rendering."""
    parts, frame_words = [], []
    for w in words:
        length = max(2, round(len(prims[w]) * rng.uniform(0.8, 1.25)))
        parts.append(resample(prims[w], length))
        frame_words += [w] * length
    motion, frame_words_arr = np.concatenate(parts), np.array(frame_words)
    if len(motion) > MAX_FRAMES:
        keep = np.linspace(0, len(motion) - 1, MAX_FRAMES).round().astype(int)
        motion, frame_words_arr = motion[keep], frame_words_arr[keep]
    pose = base * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.05, (1, 1, 2))
    keypoints = pose + motion + rng.normal(0.0, 0.01, motion.shape)
    return keypoints.astype(np.float32), frame_words_arr


def generate(folder: Path, options: dict[str, Any]) -> None:
    """Write seq/<id>.npy, feat/<id>.npy and manifest.jsonl into `folder`."""
    rng = np.random.default_rng([options["seed"], 0])
    prims = primitives(options["joints"], rng)
    base = rng.uniform(-0.5, 0.5, (1, options["joints"], 2))
    projection = rng.normal(0.0, 1.0, (len(GLOSSES), options["feature_dim"]))
    n = options["n_sentences"]
    order = rng.permutation(n)
    split = {int(i): "train" for i in order[: round(0.7 * n)]}
    split.update({int(i): "val" for i in order[round(0.7 * n) : round(0.85 * n)]})
    (folder / "seq").mkdir()
    (folder / "feat").mkdir()
    rows = []
    for s, words in enumerate(sentences(n, rng)):
        for k in range(options["signers"]):
            row_rng = np.random.default_rng([options["seed"], 1, s, k])
            keypoints, frame_words = sign(words, prims, base, row_rng)
            features = projection[frame_words] + row_rng.normal(
                0.0, 0.3, (len(frame_words), projection.shape[1])
            )
            row_id = f"sent{s:04d}-s{k}"
            np.save(folder / "seq" / f"{row_id}.npy", keypoints)
            np.save(folder / "feat" / f"{row_id}.npy", features.astype(np.float32))
            rows.append(
                {
                    "id": row_id,
                    "group": f"sent{s:04d}",
                    "split": split.get(s, "test"),
                    "text": " ".join(GLOSSES[w] for w in words),
                    "sequence": f"seq/{row_id}.npy",
                    "features": f"feat/{row_id}.npy",
                }
            )
    write_manifest(folder, rows)
