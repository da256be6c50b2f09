"""Auxiliary heads keyed by their loss term's name, in the model and loss sections alike.

YAML writes a head as `model.<term>` and its term as `loss.<term>`; the models hold them
in a `heads` dict. These helpers move the keys in on validation and back out on dump.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel

from contrastkit.config.base import _validated
from contrastkit.registry import HEADS

# Keys renamed so that a head has one name (its term's) in model, loss and outputs.
RENAMED_HEAD_KEYS = {"classifier": "classification"}


def _heads_by_term(cls: type[BaseModel], data: Any, entry: Any) -> Any:
    """Move the registered head terms of a section's mapping (`model.<term>` or
    `loss.<term>`) into its `heads` dict, each validated by `entry(term)`."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    section = "model" if "towers" in cls.model_fields else "loss"
    for old, new in RENAMED_HEAD_KEYS.items():
        if old in data and data[old] is None:
            del data[old]  # `classifier: null` in a config written before the rename
        if old in data and section == "model":
            if new in data:
                raise ValueError(f"model.{old} and model.{new} are both set; keep model.{new}")
            warnings.warn(
                f"model.{old} is deprecated; use model.{new} (the head is named after its "
                f"loss term, loss.{new})",
                FutureWarning,
                stacklevel=2,
            )
            data[new] = data.pop(old)
    heads = dict(data.pop("heads", None) or {})
    for key in [k for k in data if k not in cls.model_fields and k in HEADS]:
        value = data.pop(key)
        if value is not None:  # `captioning: null` (older run dirs' config.yaml) = no head
            heads[key] = value
    data["heads"] = {
        term: item if isinstance(item, BaseModel) else _validated((term,), entry(term), item)
        for term, item in heads.items()
    }
    return data


def _flat_heads(out: dict[str, Any]) -> dict[str, Any]:
    """Serialised section with its heads back at `<section>.<term>` (as written in YAML)."""
    heads = out.pop("heads", None) or {}
    out.update(heads)
    return out
