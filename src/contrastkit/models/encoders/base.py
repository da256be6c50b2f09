"""The registry and the building blocks every encoder shares (`Transformer`,
`AttentionPool`, `masked_mean`, option checking); the package `__init__` re-exports them
and registers the built-in encoders."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn
from typing_extensions import override

from contrastkit.config import EncoderConfig
from contrastkit.errors import ConfigError
from contrastkit.registry import Registry

EncoderFactory = Callable[..., nn.Module]
ENCODERS: Registry[EncoderFactory] = Registry("encoder")


def encoder_width(encoder: nn.Module) -> int:
    """Output width D of an encoder (every registered encoder sets a plain `width` int)."""
    # nn.Module's __getattr__ types any attribute as Tensor | Module; `width` is neither.
    return int(cast(int, encoder.width))


def option_names(cls: type) -> list[str]:
    """The keyword-only parameters of `cls.__init__`: the options a user may set."""
    params = inspect.signature(cls).parameters.values()  # __init__'s, without self
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]


def make_encoder(cls: type, options: dict[str, Any], where: str, /, **fixed: Any) -> nn.Module:
    """Instantiate `cls(**fixed, **options)`, checking `options` against its signature.

    Args:
        cls: encoder class; its keyword-only `__init__` parameters are the options.
        options: the user's options (`<where>.options`).
        where: config path of the stream, e.g. `model.towers.image.streams.image`.
        fixed: arguments the factory supplies (from the input spec and `EncoderConfig`).

    Raises:
        ConfigError: an option is unknown or has an invalid value (names the key path).
    """
    return _instantiate(cls, options, f"{where}.options", fixed)


def _instantiate(cls: type, options: dict[str, Any], path: str, fixed: dict[str, Any]) -> nn.Module:
    allowed = option_names(cls)
    for key in options:
        if key not in allowed:
            raise ConfigError(
                f"{path}.{key}: unknown option for {cls.__name__}; "
                f"allowed: {', '.join(allowed) or '(none)'}"
            )
    try:
        return cls(**fixed, **options)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: {err}") from None


def make_nested(cls: type, options: dict[str, Any], path: str, /, **fixed: Any) -> nn.Module:
    """Like `make_encoder` for a sub-encoder whose options sit at config path `path`."""
    return _instantiate(cls, options, path, fixed)


def build_encoder(
    input_spec: tuple[int, ...], cfg: EncoderConfig, tokenizer: Any, *, where: str
) -> nn.Module:
    """Build the registered encoder named by `cfg.type`."""
    try:
        factory = ENCODERS.get(cfg.type)
    except ConfigError as err:
        raise ConfigError(f"{where}.type: {err}") from None
    return factory(input_spec, cfg, tokenizer, where=where)


def check_heads(width: int, heads: int) -> None:
    """Raise ValueError unless `width` splits evenly over `heads` attention heads."""
    if width % heads:
        raise ValueError(f"width {width} must be divisible by heads {heads}")


class Transformer(nn.Module):
    """Pre-LN transformer encoder stack (batch first) with a final LayerNorm.

    Shape:
        x B x N x D, mask B x N (True = real token) -> B x N x D
    """

    def __init__(self, width: int, depth: int, heads: int, dropout: float) -> None:
        super().__init__()
        check_heads(width, heads)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            4 * width,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = (
            nn.TransformerEncoder(layer, depth, enable_nested_tensor=False) if depth else None
        )
        self.norm = nn.LayerNorm(width)

    @override
    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.layers is not None:
            padding = None if mask is None else ~_some_real(mask)
            x = self.layers(x, src_key_padding_mask=padding)
        return self.norm(x)


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over N of B x N x D tokens, counting only real ones (rows with none give 0)."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class AttentionPool(nn.Module):
    """Learned-query attention pooling (as in Set Transformer's PMA / CoCa's attentional
    pooler): one query attends over the tokens, ignoring padding.

    Shape:
        tokens B x N x D, mask B x N (True = real) -> B x D
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        check_heads(width, heads)
        self.query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)

    @override
    def forward(self, tokens: Tensor, mask: Tensor | None = None) -> Tensor:
        padding = None if mask is None else ~_some_real(mask)
        kv = self.norm(tokens)
        query = self.query.expand(tokens.shape[0], -1, -1).to(tokens.dtype)
        out, _ = self.attn(query, kv, kv, key_padding_mask=padding, need_weights=False)
        return out[:, 0]


def _some_real(mask: Tensor) -> Tensor:
    """Rows without any real token attend to everything (avoids NaN from empty softmax)."""
    empty = ~mask.any(dim=1, keepdim=True)
    return mask | empty
