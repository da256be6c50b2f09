"""Sequence encoder: padding is ignored, augmentations only in training, replayable RNG."""

from __future__ import annotations

import torch

from contrastkit.config import EncoderConfig
from contrastkit.models.encoders import build_encoder
from contrastkit.models.encoders.sequence import random_frame_mask, temporal_jitter

AUG = {"jitter": 2, "noise": 0.5, "mask_ratio": 0.4}


def _encoder(**options):
    torch.manual_seed(0)
    cfg = EncoderConfig(type="sequence", width=8, depth=1, heads=2, options=options)
    return build_encoder((6, 2, 2), cfg, None, where="model.towers.k.streams.sequence")


def test_padding_frames_do_not_change_pooled() -> None:
    enc = _encoder(**AUG).eval()
    x = torch.randn(2, 6, 2, 2)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6])
    garbage = x.clone()
    garbage[0, 4:] = 1e3
    torch.testing.assert_close(enc(x, mask).pooled, enc(garbage, mask).pooled)
    # ... and equal the pooled output of the unpadded sequence alone.
    torch.testing.assert_close(enc(x[:1, :4]).pooled, enc(x, mask).pooled[:1])


def test_eval_mode_is_deterministic_and_train_mode_augments() -> None:
    enc = _encoder(**AUG)
    x = torch.randn(4, 6, 2, 2)
    enc.eval()
    torch.testing.assert_close(enc(x).pooled, enc(x).pooled)
    enc.train()
    assert not torch.allclose(enc(x).pooled, enc(x).pooled)


def test_augmentation_replays_under_forked_rng() -> None:
    enc = _encoder(**AUG).train()
    x = torch.randn(4, 6, 2, 2)
    outs = []
    for _ in range(2):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            outs.append(enc(x).pooled)
    torch.testing.assert_close(outs[0], outs[1])


def test_temporal_jitter_shifts_and_keeps_last_real_frame() -> None:
    x = torch.arange(5.0).view(1, 5, 1).repeat(50, 1, 1)
    mask = torch.tensor([[True, True, True, False, False]]).repeat(50, 1)
    torch.manual_seed(0)
    shifted, new_mask = temporal_jitter(x, mask, max_shift=4)
    shift = shifted[:, 0, 0].long()
    assert set(shift.tolist()) == {0, 1, 2}  # at most length - 1 = 2
    assert torch.equal(new_mask.sum(1), 3 - shift)
    for row, s in zip(shifted, shift.tolist(), strict=True):
        assert row[: 3 - s, 0].tolist() == list(range(s, 3))


def test_random_frame_mask_hides_only_real_frames_and_keeps_one() -> None:
    mask = torch.tensor([[True, True, False], [True, False, False]]).repeat(100, 1)
    torch.manual_seed(0)
    out = random_frame_mask(mask, 0.9)
    assert not (out & ~mask).any()
    assert out.any(dim=1).all()
    assert out.sum() < mask.sum()
