"""Run these tiny-tensor tests single-threaded: on a shared CPU, intra-op threads only add
contention (about 3x slower here). The previous setting is restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
