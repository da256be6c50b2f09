"""Encoder registry and the small pieces every encoder shares.

An encoder factory is `factory(input_spec, cfg: EncoderConfig, tokenizer, *, where) ->
nn.Module`; the module's `forward(x, mask=None)` returns `EncoderOutput` and it exposes
`width` (the size D of its tokens and pooled vector). `where` is the config path of the
stream (`model.towers.<tower>.streams.<col>`) used in error messages.

Register your own:

    @ENCODERS.register("my_encoder")
    def build_my_encoder(input_spec, cfg, tokenizer, *, where):
        return make_encoder(MyEncoder, cfg.options, where, in_dim=input_spec[-1], width=cfg.width)
"""

from __future__ import annotations

from contrastkit.models.encoders.base import (
    ENCODERS,
    AttentionPool,
    EncoderFactory,
    Transformer,
    build_encoder,
    check_heads,
    encoder_width,
    make_encoder,
    make_nested,
    masked_mean,
    option_names,
)


def _register_builtins() -> None:
    # Imported for their registration side effect.
    from contrastkit.models.encoders import (  # noqa: F401
        features,
        hf_clip,
        hf_text,
        hf_vision,
        image,
        sequence,
        text,
        video,
    )


_register_builtins()

__all__ = [
    "ENCODERS",
    "EncoderFactory",
    "check_heads",
    "encoder_width",
    "AttentionPool",
    "build_encoder",
    "make_encoder",
    "make_nested",
    "masked_mean",
    "option_names",
    "Transformer",
]
