"""Training state <-> flat tensors + JSON: the split that lets a state_dict (model, loss,
optimizer, callback histories) go into one `.safetensors` file and one JSON, and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn


def module_tensors(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    """`module`'s state as `prefix.key` tensors, without the frozen pretrained tensors it
    lists in `base_keys` (LoRA: they are rebuilt from the model folder)."""
    skip = set(getattr(module, "base_keys", ()) or ())
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items() if k not in skip}


def sub_state(tensors: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under `prefix.`, with the prefix removed (one module's state dict)."""
    p = prefix + "."
    return {k[len(p) :]: v for k, v in tensors.items() if k.startswith(p)}


def split_tensors(obj: Any, prefix: str, tensors: dict[str, Tensor]) -> Any:
    """A JSON-able copy of `obj` whose tensors move into `tensors` (key `prefix.path`).

    Used for callback `state_dict`s, which may hold reference snapshots (drift monitors).
    """
    if isinstance(obj, Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    return obj


def join_tensors(obj: Any, tensors: Mapping[str, Tensor]) -> Any:
    """Inverse of `split_tensors`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (`optimizer.<param>.<name>`) and JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of `optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in sub_state(tensors, "optimizer").items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
