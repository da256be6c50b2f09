"""Projection head: pooled tower features -> L2-normalised embedding (CLIP, Radford et al.
2021, uses a linear map; SimCLR, Chen et al. 2020, showed an MLP head can help).

On a pretrained tower the projection must not replace what the encoder already knows:
`none` uses the encoder's pooled output as the embedding, and `init: identity` starts a
new linear map as the identity (or, when the widths differ, one fixed semi-orthogonal map
that every tower with the same widths gets), so step 0 equals the zero-shot model. Two
independent random maps on two towers of one pretrained encoder would scramble its
embedding space, and at a fine-tuning learning rate nothing recovers it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import ProjectionConfig

KINDS = ("none", "linear", "mlp")
INITS = ("random", "identity")
# Seed of the one semi-orthogonal map shared by every pretrained tower of given widths;
# a constant (not the run seed) so that both sides of a pair always get the same map.
_SHARED_MAP_SEED = 0


def shared_orthogonal(in_dim: int, out_dim: int) -> Tensor:
    """`out_dim x in_dim` identity, or a fixed semi-orthogonal map when the sizes differ.

    With out_dim >= in_dim the map is an isometry (cosines are kept exactly); with fewer
    outputs its rows are orthonormal, a random subspace that keeps cosines approximately
    (Johnson-Lindenstrauss). It depends only on the two sizes.
    """
    if in_dim == out_dim:
        return torch.eye(out_dim)
    gen = torch.Generator().manual_seed(_SHARED_MAP_SEED)
    big, small = max(in_dim, out_dim), min(in_dim, out_dim)
    q, r = torch.linalg.qr(torch.randn(big, small, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique Q (positive diagonal of R)
    w = q if out_dim > in_dim else q.T  # big x small (isometry) or small x big (rows)
    return w.to(torch.float32).contiguous()


class Projection(nn.Module):
    """None, linear or two-layer MLP map to `embed_dim`, then `F.normalize`.

    Args:
        in_dim: pooled feature size.
        embed_dim: embedding size E (ignored by `none`, whose E is `in_dim`).
        kind: "none", "linear" or "mlp".
        hidden: MLP hidden size (default: in_dim).
        dropout: dropout inside the MLP.
        init: "random" (PyTorch's default init) or "identity": the linear map starts as
            `shared_orthogonal(in_dim, embed_dim)` with zero bias; an MLP becomes that map
            plus a residual MLP whose last layer starts at zero.

    Shape:
        B x in_dim -> B x E, every row of unit L2 norm.
    """

    def __init__(
        self,
        in_dim: int,
        embed_dim: int,
        kind: str = "linear",
        hidden: int | None = None,
        dropout: float = 0.0,
        init: str = "random",
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"projection kind must be one of {KINDS}, got {kind!r}")
        if init not in INITS:
            raise ValueError(f"projection init must be one of {INITS}, got {init!r}")
        self.kind, self.init = kind, init
        self.residual: nn.Module | None = None
        if kind == "none":
            self.net: nn.Module = nn.Identity()
            embed_dim = in_dim
        elif kind == "linear" or init == "identity":
            self.net = nn.Linear(in_dim, embed_dim)
        else:
            self.net = _mlp(in_dim, embed_dim, hidden or in_dim, dropout)
        if kind != "none" and init == "identity":
            linear = self.net
            assert isinstance(linear, nn.Linear)  # init identity builds a Linear (above)
            with torch.no_grad():
                linear.weight.copy_(shared_orthogonal(in_dim, embed_dim))
                linear.bias.zero_()
            if kind == "mlp":
                residual = _mlp(in_dim, embed_dim, hidden or in_dim, dropout)
                last = residual[-1]
                assert isinstance(last, nn.Linear)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
                self.residual = residual
        self.embed_dim = embed_dim

    @override
    def forward(self, pooled: Tensor) -> Tensor:
        out = self.net(pooled)
        if self.residual is not None:
            out = out + self.residual(pooled)
        return F.normalize(out, dim=-1)


def _mlp(in_dim: int, out_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


def resolve_projection(
    cfg: ProjectionConfig, *, pretrained: bool, embedding: bool
) -> tuple[str, str]:
    """The (kind, init) that `auto` stands for on a tower.

    Args:
        pretrained: the tower's encoder carries pretrained weights.
        embedding: its pooled output is already an embedding (a sentence-transformers
            model, a CLIP/SigLIP head), so `auto` means no projection at all.
    """
    kind = cfg.type if cfg.type != "auto" else ("none" if embedding else "linear")
    init = cfg.init if cfg.init != "auto" else ("identity" if pretrained else "random")
    return kind, init


def build_projection(
    cfg: ProjectionConfig,
    in_dim: int,
    embed_dim: int,
    *,
    pretrained: bool = False,
    embedding: bool = False,
) -> Projection:
    """The projection `cfg` resolves to for this encoder (`auto` reads `pretrained` and `embedding`)."""
    kind, init = resolve_projection(cfg, pretrained=pretrained, embedding=embedding)
    return Projection(
        in_dim, embed_dim, kind=kind, hidden=cfg.hidden, dropout=cfg.dropout, init=init
    )
