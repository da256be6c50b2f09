"""A tower: one encoder per input stream -> optional fusion -> projection to the embedding.

A tower built with `Tower.sharing(owner, projection)` reuses the owner's encoders and fusion
(the same module objects) and adds only its own projection: two contrastive objectives on
one text tower. The shared modules are registered once, under the owner's name
(`towers.<owner>.encoders...`), so parameters, `state_dict` keys and safetensors files hold
them once; the sharing tower's own parameters live under `towers.<tower>.projection`.
`Tower.siamese` shares only the encoder (its own input column, its own features).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from typing_extensions import override

from contrastkit.models.encoders import encoder_width
from contrastkit.models.feature_cache import cached_features
from contrastkit.models.outputs import EncoderOutput, TowerOutput


class Tower(nn.Module):
    """Encoders (by input column), optional fusion, projection.

    Args:
        encoders: input column -> encoder module (`forward(x, mask) -> EncoderOutput`).
        fusion: combines several streams' outputs (None: exactly one stream).
        projection: pooled features -> L2-normalised embedding.
    """

    encoders: nn.ModuleDict
    fusion: nn.Module | None

    def __init__(
        self, encoders: nn.ModuleDict, fusion: nn.Module | None, projection: nn.Module
    ) -> None:
        super().__init__()
        if fusion is None and len(encoders) != 1:
            raise ValueError(f"a tower with {len(encoders)} streams needs a fusion")
        self.encoders = encoders
        self.fusion = fusion
        self.projection = projection
        self.owner: str | None = None
        self.encoder_owner: str | None = None

    @classmethod
    def sharing(cls, owner: Tower, owner_name: str, projection: nn.Module) -> Tower:
        """A tower that reuses `owner`'s encoders and fusion with its own projection."""
        tower = cls.__new__(cls)
        nn.Module.__init__(tower)
        tower.projection = projection
        # Plain attributes, not submodules: the owner registers (and moves, saves) them.
        object.__setattr__(tower, "encoders", owner.encoders)
        object.__setattr__(tower, "fusion", owner.fusion)
        tower.owner = owner_name
        tower.encoder_owner = owner_name
        return tower

    @classmethod
    def siamese(
        cls, column: str, encoder: nn.Module, encoder_owner: str, projection: nn.Module
    ) -> Tower:
        """A tower that reads its own `column` with another tower's (pretrained) encoder.

        Unlike `sharing`, the inputs differ (e.g. `text` and `text_code`), so the features
        are computed per tower; only the encoder's weights are shared, as in the siamese
        set-up of sentence-transformers. The encoder is registered once, under
        `towers.<encoder_owner>.encoders...`.
        """
        tower = cls.__new__(cls)
        nn.Module.__init__(tower)
        tower.projection = projection
        object.__setattr__(tower, "encoders", nn.ModuleDict({column: encoder}))
        object.__setattr__(tower, "fusion", None)
        tower.owner = None
        tower.encoder_owner = encoder_owner
        return tower

    @property
    def inputs(self) -> list[str]:
        """Input columns (stream names), in config order."""
        return list(self.encoders.keys())

    @property
    def width(self) -> int:
        """Size D of the fused tokens and pooled features."""
        if self.fusion is not None:
            return encoder_width(self.fusion)
        return encoder_width(next(iter(self.encoders.values())))

    def features(
        self, inputs: Mapping[str, Any], masks: Mapping[str, Tensor | None]
    ) -> EncoderOutput:
        """Encode every stream and fuse them (no projection); a locked tower reads its
        frozen-feature cache instead (see feature_cache.py)."""
        cached = cached_features(self, inputs, masks)
        if cached is not None:
            return cached
        outputs = {col: enc(inputs[col], masks.get(col)) for col, enc in self.encoders.items()}
        if self.fusion is None:
            return next(iter(outputs.values()))
        return self.fusion(outputs)

    def project(self, features: EncoderOutput) -> TowerOutput:
        """Attach this tower's embedding to (possibly shared) fused features."""
        return TowerOutput(
            tokens=features.tokens,
            pooled=features.pooled,
            embedding=self.projection(features.pooled),
            mask=features.mask,
        )

    @override
    def forward(self, inputs: Mapping[str, Any], masks: Mapping[str, Tensor | None]) -> TowerOutput:
        return self.project(self.features(inputs, masks))
