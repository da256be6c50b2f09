"""Two gloo processes on half the global batch each == one process on the whole batch."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from contrastkit.train.distributed import DistInfo, resolve_device, unwrap
from helpers.train_toys import dist_worker, toy_engine, toy_train_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.dist
def test_two_processes_match_single_process(tmp_path) -> None:
    mp.spawn(dist_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = toy_engine(
        tmp_path / "single", toy_train_config(epochs=1, accumulate=2), dropout=0.0, n=32, batch=8
    )
    single.fit()
    got = torch.load(tmp_path / "params.pt")
    for name, want in single.model.state_dict().items():
        torch.testing.assert_close(got[name], want, rtol=1e-5, atol=1e-5, msg=name)
    crit = torch.load(tmp_path / "criterion.pt")
    torch.testing.assert_close(
        crit["logit_scale"], single.criterion.logit_scale.detach(), rtol=1e-5, atol=1e-5
    )


def test_single_process_defaults() -> None:
    info = DistInfo()
    assert info.is_main and not info.enabled
    assert resolve_device("cpu") == torch.device("cpu")
    model = torch.nn.Linear(2, 2)
    assert unwrap(model) is model
