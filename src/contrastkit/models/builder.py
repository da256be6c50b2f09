"""Model assembly: towers (encoders, fusion, projection) and heads, built from `ModelConfig`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from contrastkit.config import FusionConfig, ModelConfig, TowerConfig
from contrastkit.errors import ConfigError
from contrastkit.models.encoders import build_encoder, encoder_width
from contrastkit.models.fusion import build_fusion
from contrastkit.models.model import TEXT_COLUMN, ContrastiveModel
from contrastkit.models.projection import build_projection
from contrastkit.models.tower import Tower


def is_pretrained(encoder: nn.Module) -> bool:
    """The encoder carries pretrained weights (it sets `pretrained = True`)."""
    return bool(getattr(encoder, "pretrained", False))


def _tower_projection(
    cfg: TowerConfig,
    encoders: Mapping[str, nn.Module] | nn.ModuleDict,
    fused: bool,
    width: int,
    embed_dim: int,
) -> nn.Module:
    """The projection, told whether the features come straight from a pretrained encoder
    (then `auto` keeps the pretrained space: no map, or one starting as the identity)."""
    single = None if fused else next(iter(encoders.values()))
    pretrained = single is not None and is_pretrained(single)
    embedding = pretrained and bool(getattr(single, "embedding_output", False))
    return build_projection(
        cfg.projection, width, embed_dim, pretrained=pretrained, embedding=embedding
    )


def _siamese_key(cfg: TowerConfig, input_specs: Mapping[str, tuple]) -> str | None:
    """Identity of a one-stream tower's encoder config and input kind (None for several
    streams): a text and an image column never share, even under one `hf_clip` folder."""
    if len(cfg.streams) != 1 or cfg.fusion is not None:
        return None
    col, enc = next(iter(cfg.streams.items()))
    return f"{enc.model_dump_json()} {tuple(input_specs.get(col, ()))}"


def _build_tower(
    name: str,
    cfg: TowerConfig,
    embed_dim: int,
    tokenizer: Any,
    input_specs: Mapping[str, tuple],
    pretrained_encoders: dict[str, tuple[str, nn.Module]] | None = None,
) -> Tower:
    """Build one tower. `pretrained_encoders` (encoder-config key -> (tower, encoder)) makes a
    one-stream tower reuse an earlier tower's identical pretrained encoder (siamese)."""
    for col in cfg.streams:
        if col not in input_specs and col != TEXT_COLUMN:
            raise ConfigError(
                f"model.towers.{name}.streams.{col}: the manifest has no column {col!r}; "
                f"columns: {sorted(input_specs)}"
            )
    key = _siamese_key(cfg, input_specs)
    if pretrained_encoders is not None and key in pretrained_encoders:
        owner, encoder = pretrained_encoders[key]
        col = next(iter(cfg.streams))
        projection = _tower_projection(
            cfg, {col: encoder}, False, encoder_width(encoder), embed_dim
        )
        return Tower.siamese(col, encoder, owner, projection)
    encoders = nn.ModuleDict()
    for col, enc_cfg in cfg.streams.items():
        where = f"model.towers.{name}.streams.{col}"
        # Text is a list of strings: its spec, if given, is ().
        encoders[col] = build_encoder(
            tuple(input_specs.get(col, ())), enc_cfg, tokenizer, where=where
        )
    fusion = None
    if len(encoders) > 1 or cfg.fusion is not None:
        widths = {
            col: int(getattr(enc, "width", cfg.streams[col].width)) for col, enc in encoders.items()
        }
        try:
            fusion = build_fusion(cfg.fusion or FusionConfig(), widths)
        except ValueError as err:
            raise ConfigError(f"model.towers.{name}.fusion: {err}") from None
    width = fusion.width if fusion is not None else encoder_width(encoders[next(iter(encoders))])
    projection = _tower_projection(cfg, encoders, fusion is not None, width, embed_dim)
    if pretrained_encoders is not None and key is not None:
        encoder = next(iter(encoders.values()))
        if is_pretrained(encoder):
            pretrained_encoders[key] = (name, encoder)
    return Tower(encoders, fusion, projection)


def _build_heads(
    cfg: ModelConfig, towers: dict[str, Tower], tokenizer: Any, num_classes: int | None
) -> dict[str, nn.Module]:
    heads: dict[str, nn.Module] = {}
    for term, head in cfg.heads.items():
        try:
            heads[term] = head.build(towers[head.tower].width, tokenizer, num_classes)
        except ValueError as err:
            raise ConfigError(f"model.{term}: {err}") from None
    return heads


def build_model(
    cfg: ModelConfig,
    *,
    tokenizer: Any,
    input_specs: Mapping[str, tuple],
    num_classes: int | None = None,
) -> ContrastiveModel:
    """Assemble the model `cfg` describes for inputs of the given per-sample shapes.

    `cfg.init_from` is left to the engine (it loads weights after building).

    Raises:
        ConfigError: a stream names a column the manifest lacks, an option is unknown, ...
    """
    towers: dict[str, Tower] = {}
    pretrained_encoders: dict[str, tuple[str, nn.Module]] | None = {} if cfg.siamese else None
    for name, tower_cfg in cfg.towers.items():
        if tower_cfg.share is None:
            towers[name] = _build_tower(
                name, tower_cfg, cfg.embed_dim, tokenizer, input_specs, pretrained_encoders
            )
    for name, tower_cfg in cfg.towers.items():
        if tower_cfg.share is not None:
            owner = towers[tower_cfg.share]
            fused = owner.fusion is not None
            projection = _tower_projection(
                tower_cfg, owner.encoders, fused, owner.width, cfg.embed_dim
            )
            towers[name] = Tower.sharing(owner, tower_cfg.share, projection)
    towers = {name: towers[name] for name in cfg.towers}  # config order
    _check_embedding_sizes(towers)
    heads = _build_heads(cfg, towers, tokenizer, num_classes)
    head_towers = {term: head.tower for term, head in cfg.heads.items()}
    model = ContrastiveModel(towers, tokenizer, heads=heads, head_towers=head_towers)
    model.new_modules = new_module_prefixes(towers)
    return model


def new_module_prefixes(towers: Mapping[str, Tower]) -> list[str]:
    """Projections with parameters on top of pretrained encoders: the new parameters that
    `train.new_params_lr_scale` speeds up (the encoder itself trains at `train.lr`)."""
    out = []
    for name, tower in towers.items():
        has_params = any(True for _ in tower.projection.parameters())
        if has_params and tower.fusion is None and is_pretrained(tower.encoders[tower.inputs[0]]):
            out.append(f"towers.{name}.projection")
    return out


def _check_embedding_sizes(towers: Mapping[str, Tower]) -> None:
    """Every tower must map to one embedding size (`projection: none` keeps the encoder's)."""
    sizes = {name: int(getattr(t.projection, "embed_dim", 0)) for name, t in towers.items()}
    if len(set(sizes.values())) > 1:
        raise ConfigError(
            f"model.towers: the towers' embeddings have different sizes {sizes}; a tower with "
            "`projection.type: none` keeps its encoder's width, so give the others the same "
            "width, or set model.towers.<tower>.projection.type: linear (sized by model.embed_dim)"
        )
