"""Tiny media files for the data tests (written into tmp_path, a few KB each)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """A folder with one file of every kind the readers accept."""
    rng = np.random.default_rng(0)
    plt.imsave(tmp_path / "a.png", rng.random((10, 12)), cmap="gray")
    np.save(tmp_path / "b.npy", rng.random((8, 8)).astype(np.float32))
    np.save(tmp_path / "clip.npy", (rng.random((5, 6, 6)) * 255).astype(np.uint8))
    np.savez(tmp_path / "clip.npz", frames=rng.random((3, 6, 6, 3)).astype(np.float32))
    (tmp_path / "frames").mkdir()
    for t in range(4):
        plt.imsave(tmp_path / "frames" / f"{t:02d}.png", rng.random((6, 6)), cmap="gray")
    np.save(tmp_path / "seq3.npy", rng.random((3, 4, 2)).astype(np.float32))
    np.save(tmp_path / "seq5.npy", rng.random((5, 4, 2)).astype(np.float32))
    np.save(tmp_path / "feat.npy", rng.random((2, 6)).astype(np.float32))
    save_file(
        {"features": rng.random((3, 6)).astype(np.float32)}, str(tmp_path / "feat.safetensors")
    )
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    np.save(tmp_path / "seq2d.npy", np.zeros((5, 4), dtype=np.float32))
    return tmp_path
