"""Masked token modelling head: reconstruct hidden encoder tokens from the visible ones.

In the spirit of MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners")
and of feature-prediction objectives (data2vec, Baevski et al. 2022), but applied to the
*output* tokens of an encoder: a random subset of each sample's real tokens is replaced by
a learnable mask token and a lightweight transformer predicts the original token vectors.

The target is the encoder's own tokens with the gradient stopped (``tokens.detach()``):
if gradients flowed into the target, the cheapest way to lower the MSE would be to shrink
or flatten every token (a trivial, collapsed solution). With the target fixed, the encoder
still learns through the *visible* tokens, which must carry enough context to predict the
hidden ones.

Term `masked`: YAML `model.masked` (the head) and `loss.masked` (its weight), outputs
`output.heads["masked"]` = {"prediction", "target", "mask"}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import AuxTermConfig, HeadConfig
from contrastkit.models.outputs import TermSum, TowerOutput
from contrastkit.registry import HEADS


def choose_masked(mask: Tensor, ratio: float) -> Tensor:
    """Pick ``round(ratio * n)`` of each sample's ``n`` real tokens at random.

    At least one token is masked and, when ``n >= 2``, at least one is kept; padded positions
    are never chosen. Randomness comes from torch's global RNG (``torch.rand``), so a caller
    that restores the RNG state replays the same choice. Rounding is half-to-even
    (``torch.round``).

    Args:
        mask: B x N bool, True where a token is real.
        ratio: fraction to mask, 0 < ratio < 1.

    Returns:
        B x N bool, True where a token is masked.
    """
    real = mask.sum(dim=1)
    count = torch.round(real.to(torch.float64) * ratio).long()
    count = torch.minimum(count.clamp(min=1), (real - 1).clamp(min=1))
    count = torch.minimum(count, real)  # samples without real tokens mask nothing
    noise = torch.rand(mask.shape, device=mask.device)
    noise = noise.masked_fill(~mask, 2.0)  # padded positions sort last
    rank = noise.argsort(dim=1).argsort(dim=1)
    return rank < count.unsqueeze(1)


class MaskedModellingHead(nn.Module):
    """Mask a fraction of the encoder tokens and reconstruct them.

    Args:
        dim: D, width of the encoder tokens.
        ratio: fraction of each sample's real tokens to mask, 0 < ratio < 1.
        decoder_width: width of the reconstruction transformer.
        decoder_depth: number of its (bidirectional, pre-LN) blocks.
        heads: attention heads; must divide ``decoder_width``.
        max_tokens: number of learned positions (N must not exceed it).
    """

    def __init__(
        self,
        dim: int,
        ratio: float,
        decoder_width: int,
        decoder_depth: int,
        *,
        heads: int = 4,
        max_tokens: int = 1024,
    ) -> None:
        super().__init__()
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
        if decoder_width % heads != 0:
            raise ValueError(f"decoder_width {decoder_width} must be divisible by heads {heads}")
        self.ratio = ratio
        self.max_tokens = max_tokens
        self.embed = nn.Linear(dim, decoder_width)
        self.mask_token = nn.Parameter(torch.randn(decoder_width) * 0.02)
        self.position_embedding = nn.Parameter(torch.randn(max_tokens, decoder_width) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                decoder_width,
                heads,
                dim_feedforward=4 * decoder_width,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(decoder_depth)
        )
        self.norm = nn.LayerNorm(decoder_width)
        self.predict = nn.Linear(decoder_width, dim)

    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Mask, decode and predict.

        Shape:
            tokens: B x N x D; mask: B x N bool (True = real) or None (all real).

        Returns:
            prediction B x N x D, target B x N x D (``tokens.detach()``), masked B x N bool.
            The loss (elsewhere) is the MSE over positions where ``masked`` is True.
        """
        batch, length, _ = tokens.shape
        if length > self.max_tokens:
            raise ValueError(
                f"{length} tokens exceed the masked head's max_tokens={self.max_tokens}"
            )
        if mask is None:
            mask = torch.ones(batch, length, dtype=torch.bool, device=tokens.device)
        masked = choose_masked(mask, self.ratio)
        x = self.embed(tokens)
        x = torch.where(masked.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = x + self.position_embedding[:length]
        padding = ~mask  # True = ignore as a key
        for block in self.blocks:
            x = block(x, src_key_padding_mask=padding)
        return self.predict(self.norm(x)), tokens.detach(), masked

    def run(self, tower: TowerOutput, batch: Mapping[str, Any], tokenizer: Any) -> dict:
        """The head's outputs for one batch (mask, decode, predict)."""
        del batch, tokenizer
        prediction, target, masked = self(tower.tokens, tower.mask)
        return {"prediction": prediction, "target": target, "mask": masked}


def masked_modelling_loss(prediction: Tensor, target: Tensor, mask: Tensor) -> TermSum:
    """Squared error (mean over features) summed over masked tokens only (MAE, He et al.
    2022); its mean is the per-token MSE.

    Shape:
        prediction, target: B x N x D; mask: B x N bool, True where a token was masked.
    """
    per_token = (prediction - target.detach()).pow(2).mean(-1)
    return TermSum.over((per_token * mask.to(per_token.dtype)).sum(), mask)


@HEADS.register("masked")
class MaskedHeadConfig(HeadConfig):
    """`model.masked`: mask `ratio` of `tower`'s tokens and reconstruct them."""

    ratio: float = Field(0.5, gt=0.0, lt=1.0, description="share of each row's real tokens masked")
    decoder_depth: int = Field(1, ge=1, description="reconstruction transformer blocks")
    decoder_width: int = Field(64, ge=8, description="reconstruction transformer width")

    @override
    def build(self, width: int, tokenizer: Any, num_classes: int | None) -> MaskedModellingHead:
        return MaskedModellingHead(
            dim=width,
            ratio=self.ratio,
            decoder_width=self.decoder_width,
            decoder_depth=self.decoder_depth,
        )

    @staticmethod
    @override
    def loss(outputs: dict, batch: Mapping[str, Any], term: AuxTermConfig) -> TermSum:
        return masked_modelling_loss(outputs["prediction"], outputs["target"], outputs["mask"])
