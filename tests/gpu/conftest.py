"""A tiny real model (cnn image tower with dropout + features tower) for the CUDA tests.

Every test here runs on `cpu` too (which checks the test itself on machines without a GPU)
and on `cuda`, marked `gpu` and skipped without a CUDA device.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from contrastkit.config import config_from_dict


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors: on a loaded 2-core CPU, intra-op threads only contend (this file took
    25 s with torch's default threads and 4 s with one, load ~3). Restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


GPU = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
DEVICES = ["cpu", pytest.param("cuda", marks=GPU)]


def tiny_config(device: str, **train):
    return config_from_dict(
        {
            "name": "gpu-tests",
            "data": {"manifest": "unused.jsonl", "image": {"size": 16, "channels": 3}},
            "model": {
                "embed_dim": 16,
                "towers": {
                    "image": {"streams": {"image": {"type": "cnn", "width": 8, "dropout": 0.2}}},
                    "feat": {"streams": {"features": {"type": "features", "width": 16}}},
                },
            },
            "loss": {"objectives": [{"name": "clip", "type": "clip", "towers": ["image", "feat"]}]},
            "train": {
                "epochs": 1,
                "lr": 0.01,
                "device": device,
                "progress": "none",
                "log_every": 1,
                "loggers": {"tensorboard": False},
                **train,
            },
            "doctor": {"every": 1},
        }
    )


def tiny_data(n: int = 32) -> dict:
    g = torch.Generator().manual_seed(0)
    groups = torch.arange(n) // 2  # pairs of rows are positives
    return {
        "image": torch.randn(n, 3, 16, 16, generator=g),
        "features": torch.randn(n, 12, generator=g) + groups[:, None] * 0.1,
        "group_ids": groups,
        "index": torch.arange(n),
        "ids": [f"r{i}" for i in range(n)],
    }


def tiny_parts(cfg, data: dict, batch: int, callbacks=()):
    """EngineParts over the real model and loss, batches in a fixed (seeded) order."""
    from contrastkit.losses import build_loss
    from contrastkit.models import build_model
    from contrastkit.train.engine.parts import EngineParts
    from contrastkit.train.phases import make_weights_fn

    torch.manual_seed(0)
    model = build_model(
        cfg.model, tokenizer=None, input_specs={"image": (3, 16, 16), "features": (12,)}
    )
    n = len(data["ids"])
    steps = n // batch

    def loader(epoch: int, start: int):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        for b in range(start, steps):
            idx = order[b * batch : (b + 1) * batch]
            yield {
                k: v[idx] if torch.is_tensor(v) else [v[i] for i in idx] for k, v in data.items()
            }

    return EngineParts(
        model=model,
        criterion=build_loss(cfg.loss),
        make_loader=loader,
        steps_per_epoch=steps,
        weights=make_weights_fn(cfg.loss, cfg.train.phases),
        callbacks=list(callbacks),
        config=cfg,
        probe_batch={k: v[:8] for k, v in data.items()},
    )
