"""MaskedModellingHead: which tokens are masked, what the prediction may depend on."""

from __future__ import annotations

import pytest
import torch

from contrastkit.models.heads import MaskedModellingHead
from contrastkit.models.heads.masked import choose_masked

DIM = 6


def make_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(3, 8, DIM, generator=g)
    mask = torch.ones(3, 8, dtype=torch.bool)
    mask[1, 5:] = False  # 5 real tokens
    mask[2, 2:] = False  # 2 real tokens
    return tokens, mask


def make_head(ratio: float = 0.5) -> MaskedModellingHead:
    torch.manual_seed(0)
    return MaskedModellingHead(DIM, ratio, decoder_width=16, decoder_depth=2)


def run(head: MaskedModellingHead, tokens: torch.Tensor, mask: torch.Tensor | None, seed: int = 1):
    torch.manual_seed(seed)  # the same seed replays the same masking
    return head(tokens, mask)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.5, [4, 2, 1]), (0.75, [6, 4, 1]), (0.01, [1, 1, 1]), (0.99, [7, 4, 1])],
)
def test_masks_rounded_fraction_of_real_tokens_only(ratio: float, expected: list[int]) -> None:
    _, mask = make_inputs()
    for seed in range(5):
        torch.manual_seed(seed)
        masked = choose_masked(mask, ratio)
        assert masked.sum(dim=1).tolist() == expected  # round(ratio * n), kept in [1, n - 1]
        assert not (masked & ~mask).any()


def test_masking_is_random_per_sample_and_replayable() -> None:
    mask = torch.ones(64, 8, dtype=torch.bool)
    torch.manual_seed(3)
    first = choose_masked(mask, 0.5)
    torch.manual_seed(3)
    assert torch.equal(choose_masked(mask, 0.5), first)
    assert len({tuple(row) for row in first.tolist()}) > 10
    # every position gets masked sometimes
    assert first.any(dim=0).all()


def test_shapes_target_and_single_or_missing_tokens() -> None:
    head = make_head()
    tokens, mask = make_inputs()
    prediction, target, masked = run(head, tokens, mask)
    assert prediction.shape == target.shape == tokens.shape
    assert torch.equal(target, tokens) and not target.requires_grad
    _, _, all_real = run(head, tokens, None)
    assert all_real.sum(dim=1).tolist() == [4, 4, 4]
    single = torch.zeros(3, 8, dtype=torch.bool)
    single[:2, 0] = True
    assert choose_masked(single, 0.5).sum(dim=1).tolist() == [1, 1, 0]


def test_masked_and_padded_inputs_do_not_reach_the_prediction() -> None:
    head = make_head()
    tokens, mask = make_inputs()
    prediction, _, masked = run(head, tokens, mask)
    hidden = tokens.clone()
    hidden[masked] = 50.0  # masked tokens are replaced by the mask token
    hidden[~mask] = -50.0  # padded tokens are ignored as keys
    changed, _, masked2 = run(head, hidden, mask)
    assert torch.equal(masked2, masked)
    torch.testing.assert_close(changed[mask], prediction[mask])
    visible = tokens.clone()
    visible[~masked & mask] += 1.0
    assert not torch.allclose(run(head, visible, mask)[0][masked], prediction[masked])


def test_masked_loss_trains_encoder_only_through_visible_tokens() -> None:
    head = make_head()
    tokens, mask = make_inputs()
    tokens.requires_grad_(True)
    prediction, target, masked = run(head, tokens, mask)
    loss = ((prediction - target) ** 2)[masked].mean()
    loss.backward()
    grad_norm = tokens.grad.norm(dim=-1)
    # the target is stop-gradient and masked inputs were replaced: no gradient there
    assert torch.all(grad_norm[masked] == 0)
    assert torch.all(grad_norm[~mask] == 0)
    assert torch.all(grad_norm[~masked & mask] > 0)
    assert head.mask_token.grad is not None and head.mask_token.grad.norm() > 0


def test_rejects_bad_ratio_and_too_many_tokens() -> None:
    with pytest.raises(ValueError, match="ratio"):
        MaskedModellingHead(DIM, 1.0, 16, 1)
    head = MaskedModellingHead(DIM, 0.5, 16, 1, max_tokens=4)
    with pytest.raises(ValueError, match="max_tokens"):
        head(torch.randn(1, 5, DIM))
