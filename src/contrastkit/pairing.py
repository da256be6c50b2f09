"""One answer to the three pairing questions that every part of contrastkit asks.

1. Which towers are text? A tower whose input streams (its own, or those of the tower
   it `share`s) are all text columns (`data.manifest.is_text_column`). The name of the
   tower plays no part: `report`, `caption` and `text` are all text towers when they read
   text columns.
2. Which (query, gallery) pairs are evaluated? `eval.pairs` when given; otherwise every
   objective's two towers in *both* directions, the text tower as the query of the first
   direction (`text_to_image` before `image_to_text`). A one-tower objective (triplet on
   charts) is evaluated as leave-one-out `(t, t)`.
3. Which metric selects the best checkpoint? `train.select_metric` when given; otherwise
   `<val split>/<query>_to_<gallery>/R@1` of the first evaluated pair.

Training, `contrastkit eval`, search, sweeps and the doctor all call these functions, so
`summary.json` and `eval.json` name every statistic the same way (`val/text_image/...`),
and the checkpoint chosen as "best" is judged on the direction the tables show first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from contrastkit.config import Config
from contrastkit.data.manifest import is_text_column


class HasTowerInputs(Protocol):
    """What `text_column_of` needs of a model: the input columns of each tower."""

    def tower_inputs(self, tower: str) -> Sequence[str]:
        """The input columns (manifest column names) of `tower`."""


def tower_streams(cfg: Config, tower: str) -> list[str]:
    """Input columns of `tower`, following `share` to the tower that owns the encoders."""
    towers = cfg.model.towers
    t = towers[tower]
    seen = {tower}
    while t.share is not None and t.share not in seen:
        seen.add(t.share)
        t = towers[t.share]
    return list(t.streams)


def is_text_tower(cfg: Config, tower: str) -> bool:
    """True when every input column of `tower` is a text column."""
    streams = tower_streams(cfg, tower)
    return bool(streams) and all(is_text_column(c) for c in streams)


def text_towers(cfg: Config) -> list[str]:
    """The text towers of `cfg`, in config order."""
    return [t for t in cfg.model.towers if is_text_tower(cfg, t)]


def text_column_of(model: HasTowerInputs, tower: str) -> str | None:
    """The column of a built model's tower whose only input is text (so raw strings — a
    search query, class prompts — can be embedded by it), else None."""
    columns = list(model.tower_inputs(tower))
    return columns[0] if len(columns) == 1 and is_text_column(columns[0]) else None


def _ordered(cfg: Config, towers: Sequence[str]) -> tuple[str, str]:
    """An objective's towers as (query, gallery): the text tower queries first."""
    a, b = (list(towers) * 2)[:2]
    if a != b and is_text_tower(cfg, b) and not is_text_tower(cfg, a):
        a, b = b, a
    return a, b


def eval_pairs(cfg: Config) -> list[tuple[str, str]]:
    """(query tower, gallery tower) pairs evaluated everywhere (see the module docstring)."""
    if cfg.eval.pairs:
        return [(str(p[0]), str(p[1])) for p in cfg.eval.pairs]
    pairs: list[tuple[str, str]] = []
    for obj in cfg.loss.objectives:
        a, b = _ordered(cfg, obj.towers)
        for pair in ((a, b), (b, a)):
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def select_metric(cfg: Config) -> str | None:
    """The metric that picks the best checkpoint (and that sweeps and early stopping use).

    None when nothing can be selected: no validation split and no explicit metric.
    """
    if cfg.train.select_metric:
        return cfg.train.select_metric
    pairs = eval_pairs(cfg)
    if not pairs or cfg.data.val_split is None:
        return None
    q, g = pairs[0]
    return f"{cfg.data.val_split}/{q}_to_{g}/R@1"
