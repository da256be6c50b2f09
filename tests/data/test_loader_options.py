"""`data.num_workers: auto`, pin_memory and persistent_workers reach the DataLoader."""

from __future__ import annotations

import json

import pytest
import torch

from contrastkit.config import DataConfig
from contrastkit.data import build_datasets, build_loader, workers
from contrastkit.data.workers import MAX_AUTO_WORKERS, resolve_workers, worker_options


@pytest.mark.parametrize("cores,want", [(1, 0), (2, 1), (4, 3), (64, MAX_AUTO_WORKERS)])
def test_auto_workers_are_cores_minus_one_capped(monkeypatch, cores, want) -> None:
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert resolve_workers("auto") == want
    assert resolve_workers(3) == 3


def test_worker_options(monkeypatch) -> None:
    cfg = DataConfig(manifest="m.jsonl", num_workers=2, persistent_workers=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_options(cfg) == {
        "num_workers": 2,
        "pin_memory": False,
        "persistent_workers": True,
        "worker_init_fn": workers.leave_signals_to_the_trainer,  # preemption: see workers.py
    }
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto pins on CUDA machines
    assert worker_options(cfg)["pin_memory"] is True
    cfg = DataConfig(manifest="m.jsonl", num_workers=0, pin_memory=False)
    assert worker_options(cfg) == {"num_workers": 0, "pin_memory": False}


def test_manifest_loader_gets_the_options(tmp_path) -> None:
    rows = [{"id": f"r{i}", "text": f"t {i}", "attributes": [i, 1.0]} for i in range(8)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(manifest=str(tmp_path / "m.jsonl"), num_workers=1, batch_size=4)
    dataset = build_datasets(cfg).splits["train"]
    loader = build_loader(dataset, cfg, train=True, seed=0)
    assert (loader.num_workers, loader.persistent_workers) == (1, True)
    assert loader.pin_memory is torch.cuda.is_available()
    ids = sorted(i for batch in loader for i in batch["ids"])  # decoded in the worker
    assert ids == sorted(r["id"] for r in rows)


def test_num_workers_rejects_other_words() -> None:
    with pytest.raises(ValueError, match="num_workers"):
        DataConfig(manifest="m.jsonl", num_workers="many")


def test_reused_persistent_loader_equals_a_fresh_one(tmp_path) -> None:
    from contrastkit.data.loaders import reuse_loader

    rows = [{"id": f"r{i}", "text": f"t {i}", "attributes": [i, 1.0]} for i in range(12)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DataConfig(manifest=str(tmp_path / "m.jsonl"), num_workers=1, batch_size=4)
    dataset = build_datasets(cfg).splits["train"]
    loader = build_loader(dataset, cfg, train=True, seed=0, epoch=0)
    first = [b["ids"] for b in loader]
    assert reuse_loader(loader, epoch=1, start_batch=1)
    fresh = build_loader(dataset, cfg, train=True, seed=0, epoch=1, start_batch=1)
    assert [b["ids"] for b in loader] == [b["ids"] for b in fresh] != first[1:]
    assert len(loader) == 2
    no_workers = build_loader(
        dataset, cfg.model_copy(update={"num_workers": 0}), train=True, seed=0
    )
    assert not reuse_loader(no_workers, 1, 0)


def test_pil_resize_matches_the_tensor_resize(tmp_path) -> None:
    """8-bit pictures are resized by PIL (the fast path); the result is the float-tensor
    resize within about one 8-bit level (2/255 after the [-1, 1] normalisation)."""
    import numpy as np
    from PIL import Image

    from contrastkit.data.images import read_image
    from contrastkit.data.media import resize_normalised, to_channels, unit_range

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:60, 0:80] / 80
    pixels = np.stack([xx, yy, xx * yy], -1) * 255 + rng.normal(0, 10, (60, 80, 3))
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    for size, channels in [(24, 3), (24, 1), (100, 3)]:
        fast = read_image(tmp_path / "a.png", size, channels)
        slow = resize_normalised(to_channels(unit_range(pixels)[None], channels), size)[0]
        assert fast.shape == slow.shape == (channels, size, size)
        diff = (fast - slow).abs()
        assert diff.mean() < 1 / 255 and diff.max() < 6 / 255, (size, diff.max())
