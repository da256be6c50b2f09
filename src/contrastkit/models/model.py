"""The contrastive model: towers + auxiliary heads, with encode, forward and generate.

Module-name prefixes (what `train.freeze`, phases and `train.lr_scale` match):
`towers.<tower>.encoders.<stream>`, `towers.<tower>.fusion`, `towers.<tower>.projection`,
and one per head, named after its loss term: `captioning`, `masked`, `classification`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.errors import ConfigError, DataError
from contrastkit.models.outputs import EncoderOutput, ModelOutput, TowerOutput
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
        # `torch.compile(tower)` registers an OptimizedModule that holds the Tower as
        # `_orig_mod`; the Tower's attributes (inputs, owner, project) are read from it.
        tower = getattr(self.towers[name], "_orig_mod", self.towers[name])
        assert isinstance(tower, Tower)
        return tower

    def _run_tower(self, name: str, batch: Mapping[str, Any]) -> TowerOutput:
        """The tower's forward through its registered module, so a compiled tower runs its
        compiled code (`Tower.forward` is `project(features(...))`)."""
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
        out: TowerOutput = self.towers[name](inputs, masks)
        return out

    def encode(self, tower: str, batch: Mapping[str, Any]) -> TowerOutput:
        """One tower's output; only its input columns are needed in `batch`."""
        return self._run_tower(tower, batch)

    def forward(self, batch: Mapping[str, Any]) -> ModelOutput:
        """Every tower whose inputs are in `batch`, then the heads whose tower ran."""
        shared: dict[str, EncoderOutput] = {}  # owner tower -> fused features, computed once
        towers: dict[str, TowerOutput] = {}
        for name in self.towers:
            tower = self._tower(name)
            if not all(col in batch for col in tower.inputs):
                continue
            owner = tower.owner or name
            if owner in shared:
                towers[name] = tower.project(shared[owner])
                continue
            # A sharing tower reads its owner's encoders and fusion, so whichever tower of
            # the group runs first computes the group's features.
            first = towers[name] = self._run_tower(name, batch)
            shared[owner] = EncoderOutput(tokens=first.tokens, pooled=first.pooled, mask=first.mask)
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


# Head modules saved under an older name (checkpoints of earlier runs).
_RENAMED_HEAD_MODULES = {"classifier.": "classification."}


def _renamed_head_keys(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: map a head's old module prefix to its term name."""
    del module, args
    for old, new in _RENAMED_HEAD_MODULES.items():
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)
