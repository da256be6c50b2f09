"""Model assembly: towers + auxiliary heads, built from `ModelConfig`.

Module-name prefixes (what `train.freeze`, phases and `train.lr_scale` match):
`towers.<tower>.encoders.<stream>`, `towers.<tower>.fusion`, `towers.<tower>.projection`,
and one per head, named after its loss term: `captioning`, `masked`, `classification`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import FusionConfig, ModelConfig, TowerConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.models.encoders import build_encoder, encoder_width
from contrastkit.models.fusion import build_fusion
from contrastkit.models.outputs import EncoderOutput, ModelOutput, TowerOutput
from contrastkit.models.projection import build_projection
from contrastkit.models.tower import Tower
from contrastkit.pixels import PIXEL_COLUMNS, normalise_pixels

TEXT_COLUMN = "text"


def stream_mask(batch: Mapping[str, Any], column: str) -> Tensor | None:
    """The padding / view mask that goes with `column` (`<col>_mask` or `<col>_view_mask`)."""
    for key in (f"{column}_mask", f"{column}_view_mask"):
        if key in batch:
            return batch[key]
    return None


class ContrastiveModel(nn.Module):
    """Towers mapping each side to a shared embedding space, plus optional heads.

    Args:
        towers: tower name -> Tower.
        tokenizer: tokenizes text for the captioning decoder (and builtin text encoders).
        heads: loss-term name -> head module (with `run(tower_output, batch, tokenizer)`);
            each is a sub-module under its term name.
        head_towers: term name -> the tower its head reads.
    """

    def __init__(
        self,
        towers: dict[str, Tower],
        tokenizer: Any,
        *,
        heads: dict[str, nn.Module] | None = None,
        head_towers: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        self.tokenizer = tokenizer
        self.head_names = list(heads or {})
        for term, module in (heads or {}).items():
            self.add_module(term, module)
        self.head_towers = dict(head_towers or {})
        captioning = (heads or {}).get("captioning")
        # The column the captioning head writes (read by the report and evaluation).
        self.text_column: str = getattr(captioning, "text_column", TEXT_COLUMN)
        self.register_load_state_dict_pre_hook(_renamed_head_keys)
        self.new_modules: list[str] = []  # module prefixes of new params on pretrained towers
        # Frozen pretrained tensors that checkpoints leave out (set by train.lora), and the
        # identity (path, sha256) of the folders they come from.
        self.base_keys: list[str] = []
        self.base_weights: dict[str, dict[str, str]] = {}

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):
        """As `nn.Module.load_state_dict`; the frozen base tensors a checkpoint leaves out
        (`base_keys`) keep the values loaded from the pretrained folder."""
        missing = [k for k in self.base_keys if k not in state_dict]
        if missing:
            own = super().state_dict()
            state_dict = {**{k: own[k] for k in missing}, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def tower_names(self) -> list[str]:
        """Every tower, in config order."""
        return list(self.towers.keys())

    @property
    def heads(self) -> dict[str, Any]:
        """Term name -> head module (each has `run`; the captioning head also `generate`)."""
        return {term: getattr(self, term) for term in self.head_names}

    @property
    def has_captioning(self) -> bool:
        """True when the model has a captioning head."""
        return "captioning" in self.head_names

    def tower_inputs(self, tower: str) -> list[str]:
        """Input columns of `tower` (a sharing tower has its owner's)."""
        return self._tower(tower).inputs

    def _tower(self, name: str) -> Tower:
        if name not in self.towers:
            raise KeyError(f"no tower {name!r}; towers: {self.tower_names}")
        tower = self.towers[name]
        assert isinstance(tower, Tower)
        return tower

    def _features(self, name: str, batch: Mapping[str, Any]) -> EncoderOutput:
        tower = self._tower(name)
        missing = [col for col in tower.inputs if col not in batch]
        if missing:
            raise DataError(
                f"tower {name!r} needs batch columns {missing}; the batch has {sorted(batch)}"
            )
        # uint8 pictures are normalised here, on the device the batch was moved to.
        inputs = {
            col: normalise_pixels(batch[col]) if col in PIXEL_COLUMNS else batch[col]
            for col in tower.inputs
        }
        masks = {col: stream_mask(batch, col) for col in tower.inputs}
        return tower.features(inputs, masks)

    def encode(self, tower: str, batch: Mapping[str, Any]) -> TowerOutput:
        """One tower's output; only its input columns are needed in `batch`."""
        return self._tower(tower).project(self._features(tower, batch))

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        """Every tower whose inputs are in `batch`, then the heads whose tower ran."""
        shared: dict[str, EncoderOutput] = {}  # owner tower -> fused features, computed once
        towers: dict[str, TowerOutput] = {}
        for name in self.towers:
            tower = self._tower(name)
            if not all(col in batch for col in tower.inputs):
                continue
            owner = tower.owner or name
            if owner not in shared:
                shared[owner] = self._features(name, batch)
            towers[name] = tower.project(shared[owner])
        out = ModelOutput(towers=towers)
        self._heads(out, batch)
        return out

    def _heads(self, out: ModelOutput, batch: Mapping[str, Any]) -> None:
        for term, head in self.heads.items():
            tower = out.towers.get(self.head_towers[term])
            if tower is None:
                continue
            result = head.run(tower, batch, self.tokenizer)
            if result is not None:
                out.heads[term] = result

    @torch.no_grad()
    def generate(
        self,
        batch: Mapping[str, Any],
        *,
        method: str = "greedy",
        beam_size: int = 4,
        max_length: int = 48,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
    ) -> list[str]:
        """Captions for the batch from the captioning head (decoded with the tokenizer)."""
        if not self.has_captioning:
            raise ConfigError("generate needs a captioning head: set model.captioning")
        t = self.encode(self.head_towers["captioning"], batch)
        ids = self.heads["captioning"].generate(
            t.tokens,
            t.mask,
            method=method,
            beam_size=beam_size,
            max_length=max_length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
        )
        return self.tokenizer.decode(ids.cpu())


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


# Head modules saved under an older name (checkpoints of earlier runs).
_RENAMED_HEAD_MODULES = {"classifier.": "classification."}


def _renamed_head_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: map a head's old module prefix to its term name."""
    del module, args
    for old, new in _RENAMED_HEAD_MODULES.items():
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)


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
