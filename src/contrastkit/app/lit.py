"""Which towers are locked for the whole run, and their frozen-feature caches (LiT).

A tower is cached when all of these hold, so reading the cache changes nothing but speed:
one input stream and no fusion (the cache holds pooled features only); no captioning or
masked head reads its tokens; its encoder has no train-time augmentation; every encoder
parameter is frozen by `train.freeze` and no phase unfreezes any of them; no distillation
(its EMA copy of the model would copy the cache too); `train.feature_cache` is on.

Locked-image / trainable-text (LiT) is one line, `train.freeze: [towers.image.encoders]`;
both towers frozen with trainable projections is `train.freeze: [towers.a.encoders,
towers.b.encoders]` (one prefix when the towers share a siamese encoder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn
from typing_extensions import override

from contrastkit.config import Config
from contrastkit.events import Callback, State
from contrastkit.models.feature_cache import FeatureCache, attach_cache

log = logging.getLogger(__name__)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _locked(names: list[str], cfg: Config) -> bool:
    """Every name frozen by train.freeze, none unfrozen by a phase."""
    unfreeze = [p for phase in cfg.train.phases for p in phase.unfreeze]
    return bool(names) and all(
        any(_matches(n, p) for p in cfg.train.freeze) and not any(_matches(n, p) for p in unfreeze)
        for n in names
    )


def locked_encoders(model: Any, cfg: Config) -> dict[str, nn.Module]:
    """Tower name -> its encoder, for every tower whose features can be cached."""
    if not cfg.train.feature_cache or cfg.loss.distillation is not None:
        return {}
    token_heads = {
        cfg.model.heads[h].tower for h in ("captioning", "masked") if h in cfg.model.heads
    }
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for name, tower in model.towers.items():
        owner = getattr(tower, "owner", None) or name
        if tower.fusion is not None or len(tower.inputs) != 1 or {name, owner} & token_heads:
            continue
        encoder = tower.encoders[tower.inputs[0]]
        if hasattr(encoder, "augment"):
            continue
        if _locked([names[id(p)] for p in encoder.parameters() if id(p) in names], cfg):
            out[name] = encoder
    return out


def attach_feature_caches(
    model: Any, cfg: Config, run_dir: Path, read_options: Any = None
) -> list[FeatureCache]:
    """Give every locked tower a cache (one per encoder: siamese towers share it)."""
    locked = locked_encoders(model, cfg)
    if not locked:
        return []
    folder = Path(cfg.train.feature_cache_dir or run_dir / "feature_cache")
    by_encoder: dict[int, FeatureCache] = {}
    for name, encoder in locked.items():
        if id(encoder) not in by_encoder:
            by_encoder[id(encoder)] = FeatureCache(folder, encoder, read_options)
        cache = by_encoder[id(encoder)]
        attach_cache(model.towers[name], cache)
        log.info(
            "tower %s is locked: features cached in %s (%d cached)", name, cache.folder, len(cache)
        )
    return list(by_encoder.values())


class FlushFeatureCaches(Callback):
    """Writes newly encoded features to disk at the end of every epoch and of the fit."""

    def __init__(self, caches: list[FeatureCache]) -> None:
        self.caches = caches

    def flush(self) -> dict[str, float]:
        """Flush every cache; returns how many inputs each encoded (for the summary)."""
        for cache in self.caches:
            cache.flush()
        return {f"feature_cache/{i}/encoded": float(c.encoded) for i, c in enumerate(self.caches)}

    @override
    def on_epoch_end(self, state: State) -> None:
        """Persist the epoch's new features (so a crash keeps them)."""
        self.flush()

    @override
    def on_fit_end(self, state: State) -> None:
        """Persist whatever the last evaluation encoded."""
        self.flush()
