"""Model assembly: towers + auxiliary heads, built from `ModelConfig`.

Module-name prefixes (what `train.freeze`, phases and `train.lr_scale` match):
`towers.<tower>.encoders.<stream>`, `towers.<tower>.fusion`, `towers.<tower>.projection`,
`captioning`, `masked`, `classifier`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.config import FusionConfig, ModelConfig, TowerConfig
from contrastkit.errors import ConfigError, DataError
from contrastkit.models.encoders import build_encoder
from contrastkit.models.fusion import build_fusion
from contrastkit.models.outputs import EncoderOutput, ModelOutput, TowerOutput
from contrastkit.models.projection import build_projection
from contrastkit.models.tower import Tower

TEXT_COLUMN = "text"
_DEFAULT_TEXT_LENGTH = 48


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
        tokenizer: tokenizes `text` for the captioning decoder (and builtin text encoders).
        captioning, masked, classifier: optional heads.
        head_towers: head name -> the tower it reads.
        text_column: batch column the captioning head learns to generate.
    """

    def __init__(
        self,
        towers: dict[str, Tower],
        tokenizer: Any,
        *,
        captioning: nn.Module | None = None,
        masked: nn.Module | None = None,
        classifier: nn.Module | None = None,
        head_towers: dict[str, str] | None = None,
        text_column: str = TEXT_COLUMN,
    ) -> None:
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        self.tokenizer = tokenizer
        self.captioning = captioning
        self.masked = masked
        self.classifier = classifier
        self.head_towers = dict(head_towers or {})
        self.text_column = text_column
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
        return list(self.towers.keys())

    @property
    def has_captioning(self) -> bool:
        return self.captioning is not None

    def tower_inputs(self, tower: str) -> list[str]:
        """Input columns of `tower` (a sharing tower has its owner's)."""
        return self._tower(tower).inputs

    def _tower(self, name: str) -> Tower:
        if name not in self.towers:
            raise KeyError(f"no tower {name!r}; towers: {self.tower_names}")
        return self.towers[name]

    def _features(self, name: str, batch: Mapping[str, Any]) -> EncoderOutput:
        tower = self._tower(name)
        missing = [col for col in tower.inputs if col not in batch]
        if missing:
            raise DataError(
                f"tower {name!r} needs batch columns {missing}; the batch has {sorted(batch)}"
            )
        inputs = {col: batch[col] for col in tower.inputs}
        masks = {col: stream_mask(batch, col) for col in tower.inputs}
        return tower.features(inputs, masks)

    def encode(self, tower: str, batch: Mapping[str, Any]) -> TowerOutput:
        """One tower's output; only its input columns are needed in `batch`."""
        return self._tower(tower).project(self._features(tower, batch))

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        """Every tower whose inputs are in `batch`, then the heads whose tower ran."""
        shared: dict[str, EncoderOutput] = {}  # owner tower -> fused features, computed once
        towers: dict[str, TowerOutput] = {}
        for name, tower in self.towers.items():
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
        towers = out.towers
        if self.masked is not None and self.head_towers["masked"] in towers:
            t = towers[self.head_towers["masked"]]
            out.masked_prediction, out.masked_target, out.masked_mask = self.masked(
                t.tokens, t.mask
            )
        if self.classifier is not None and self.head_towers["classifier"] in towers:
            out.class_logits = self.classifier(towers[self.head_towers["classifier"]].pooled)
        if (
            self.captioning is not None
            and self.head_towers["captioning"] in towers
            and self.text_column in batch
        ):
            t = towers[self.head_towers["captioning"]]
            ids, _ = self.tokenizer.encode(list(batch[self.text_column]), self._text_length())
            ids = ids.to(t.tokens.device)
            out.caption_logits, out.caption_targets = self.captioning(t.tokens, t.mask, ids)

    def _text_length(self) -> int:
        return int(getattr(self.tokenizer, "max_length", _DEFAULT_TEXT_LENGTH))

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
        if self.captioning is None:
            raise ConfigError("generate needs a captioning head: set model.captioning")
        t = self.encode(self.head_towers["captioning"], batch)
        ids = self.captioning.generate(
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
    cfg: TowerConfig, encoders: Mapping[str, nn.Module], fused: bool, width: int, embed_dim: int
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
        projection = _tower_projection(cfg, {col: encoder}, False, int(encoder.width), embed_dim)
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
    width = fusion.width if fusion is not None else int(encoders[next(iter(encoders))].width)
    projection = _tower_projection(cfg, encoders, fusion is not None, width, embed_dim)
    if pretrained_encoders is not None and key is not None:
        encoder = next(iter(encoders.values()))
        if is_pretrained(encoder):
            pretrained_encoders[key] = (name, encoder)
    return Tower(encoders, fusion, projection)


def _build_heads(
    cfg: ModelConfig, towers: dict[str, Tower], tokenizer: Any, num_classes: int | None
) -> dict[str, nn.Module]:
    if not (cfg.captioning or cfg.masked or cfg.classifier):
        return {}
    try:
        from contrastkit.models.heads import CaptioningDecoder, ClassifierHead, MaskedModellingHead
    except ImportError as err:  # pragma: no cover - heads ship with the package
        raise ConfigError(f"model heads are unavailable: {err}") from None
    heads: dict[str, nn.Module] = {}
    try:
        if (c := cfg.captioning) is not None:
            heads["captioning"] = CaptioningDecoder(
                vocab_size=tokenizer.vocab_size,
                memory_dim=towers[c.tower].width,
                width=c.width,
                depth=c.depth,
                heads=c.heads,
                dropout=c.dropout,
                max_length=int(getattr(tokenizer, "max_length", _DEFAULT_TEXT_LENGTH)),
                pad_id=tokenizer.pad_id,
                bos_id=tokenizer.bos_id,
                eos_id=tokenizer.eos_id,
            )
        if (m := cfg.masked) is not None:
            heads["masked"] = MaskedModellingHead(
                dim=towers[m.tower].width,
                ratio=m.ratio,
                decoder_width=m.decoder_width,
                decoder_depth=m.decoder_depth,
            )
        if (k := cfg.classifier) is not None:
            classes = k.num_classes or num_classes
            if not classes or classes < 2:
                raise ConfigError(
                    f"model.classifier needs num_classes >= 2 (got {classes}): set "
                    "model.classifier.num_classes or give the manifest a label column"
                )
            heads["classifier"] = ClassifierHead(
                towers[k.tower].width, classes, k.hidden, k.dropout
            )
    except ValueError as err:
        raise ConfigError(f"model heads: {err}") from None
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
    head_towers = {
        head: getattr(cfg, head).tower
        for head in ("captioning", "masked", "classifier")
        if getattr(cfg, head) is not None
    }
    text_column = cfg.captioning.text_column if cfg.captioning is not None else TEXT_COLUMN
    model = ContrastiveModel(
        towers, tokenizer, head_towers=head_towers, text_column=text_column, **heads
    )
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
