"""Which evaluation splits can rank anything, said before training.

Retrieval on a gallery of one match group is perfect by construction (the only candidate
is the right one: val R@1 = 1.0 on a one-row split), and R@k for a k at or above the
gallery size is 1.0 whatever the model. Such numbers must not pick the best checkpoint
or stop early: a run whose val split has fewer than `MIN_SELECT_GROUPS` groups is trained
without periodic evaluation (its last checkpoint is the result), with a warning; a
split whose gallery is smaller than `max(eval.ks)` gets a warning naming the ks.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from contrastkit.config import Config

log = logging.getLogger(__name__)

# Two groups are the fewest with one wrong candidate per query: R@1 can then be below 1.
MIN_SELECT_GROUPS = 2


def split_groups(dataset: Any) -> int | None:
    """Distinct match groups of a split (None for a stream without group ids)."""
    ids = getattr(dataset, "group_ids", None)
    return None if ids is None else len(np.unique(np.asarray(ids)))


def val_can_select(bundle: Any, cfg: Config) -> bool:
    """True when the val split exists and its retrieval numbers can tell checkpoints apart."""
    val = cfg.data.val_split
    if not val or val not in bundle.splits or not len(bundle.splits[val]):
        return False
    groups = split_groups(bundle.splits[val])
    if groups is not None and groups < MIN_SELECT_GROUPS:
        log.warning(
            "the %r split holds %d match group(s): every query's only candidate is its match, "
            "so val R@1 is 1.0 by construction; it will not pick the best checkpoint or stop "
            "early (no evaluation during training; the last checkpoint is the result). Give "
            "it rows of at least %d groups",
            val,
            groups,
            MIN_SELECT_GROUPS,
        )
        return False
    return True


def warn_small_galleries(bundle: Any, cfg: Config) -> None:
    """Warn for each evaluated split whose gallery is not larger than some k of eval.ks."""
    for name in dict.fromkeys([cfg.data.val_split, *cfg.eval.splits]):
        if not name or name not in bundle.splits or not len(bundle.splits[name]):
            continue
        groups = split_groups(bundle.splits[name])
        trivial = [k for k in cfg.eval.ks if groups is not None and k >= groups]
        if trivial:
            log.warning(
                "the %r split has %d match groups: R@k for k in %s is 1.0 whatever the "
                "model (the gallery is that small); read the smaller ks, or add rows",
                name,
                groups,
                trivial,
            )
