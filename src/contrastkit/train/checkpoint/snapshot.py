"""The whole training state <-> one checkpoint (tensors + JSON), for bit-identical resume.

`capture` turns the live objects (model, loss, optimizer, scheduler, scaler, EMA, callback
histories, RNG) plus the engine's counters into what `files.save_checkpoint` writes;
`restore` puts a loaded checkpoint back. A checkpoint whose tensor shapes no longer fit the
model (the config changed `embed_dim`, a tower's width, ...) is a `RunDirError` naming the
config keys that changed, not a state_dict traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

from contrastkit.errors import RunDirError
from contrastkit.events import Callback
from contrastkit.train.checkpoint import files as ckpt_files
from contrastkit.train.checkpoint import folder as ckpt_dir
from contrastkit.train.checkpoint import state_tensors
from contrastkit.train.ema import EMA
from contrastkit.train.optim.schedule import LrScheduler
from contrastkit.train.rng import capture_rng, restore_rng, rng_from_json, rng_to_json

log = logging.getLogger(__name__)

# Changed config keys named in a message (a renamed section can differ in hundreds).
MAX_KEYS_SHOWN = 12


@dataclass
class Trainables:
    """The live objects a checkpoint saves and restores."""

    model: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: LrScheduler
    scaler: Any = None
    ema: EMA | None = None
    callbacks: Sequence[Callback] = ()


def config_dict(config: Any) -> dict[str, Any]:
    """The run config as plain JSON (empty when the engine runs without one)."""
    return config.model_dump(mode="json") if config is not None else {}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted config keys whose values differ between two config dicts."""
    a, b = _flat(old), _flat(new)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _describe(keys: list[str]) -> str:
    more = f" (+{len(keys) - MAX_KEYS_SHOWN} more)" if len(keys) > MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:MAX_KEYS_SHOWN]) + more if keys else "none recorded"


def capture(t: Trainables, counters: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) of the whole training state; `counters` go into meta as they are."""
    tensors = {
        **state_tensors.module_tensors("model", t.model),
        **state_tensors.module_tensors("criterion", t.criterion),
    }
    opt_tensors, opt_meta = state_tensors.optimizer_tensors(t.optimizer)
    tensors.update(opt_tensors)
    if t.ema is not None:
        tensors.update({f"ema.{k}": v for k, v in t.ema.state_dict().items()})
    callbacks = [cb.state_dict() for cb in t.callbacks]
    meta = {
        **counters,
        "rng": rng_to_json(capture_rng()),
        "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "optimizer": opt_meta,
        "callbacks": state_tensors.split_tensors(callbacks, "callbacks", tensors),
        "base_weights": getattr(t.model, "base_weights", {}) or {},  # LoRA: what it adapts
    }
    return tensors, meta


def _load_module(module: nn.Module, state: dict, what: str, meta: dict, config: dict) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        keys = changed_keys(meta.get("config", {}), config)
        raise RunDirError(
            f"the checkpoint's {what} tensors do not fit the model this config builds "
            f"(changed config keys: {_describe(keys)}). Resume with the run's own "
            f"config.yaml, or start a new run directory. Detail: {str(err).splitlines()[0]}"
        ) from err


def restore(
    t: Trainables, tensors: dict[str, torch.Tensor], meta: dict, config: dict[str, Any]
) -> None:
    """Put a checkpoint back into the live objects (counters stay in `meta` for the caller).

    Raises:
        RunDirError: tensor shapes or callback count do not fit this run.
    """
    if "config" in meta and (keys := changed_keys(meta["config"], config)):
        log.warning(
            "resuming with a config that differs from the checkpoint's in: %s", _describe(keys)
        )
    _load_module(t.model, state_tensors.sub_state(tensors, "model"), "model", meta, config)
    _load_module(t.criterion, state_tensors.sub_state(tensors, "criterion"), "loss", meta, config)
    state_tensors.load_optimizer(t.optimizer, tensors, meta["optimizer"])
    t.scheduler.load_state_dict(meta["scheduler"])
    if t.scaler is not None and meta.get("scaler"):
        t.scaler.load_state_dict(meta["scaler"])
    if t.ema is not None:
        t.ema.load_state_dict(state_tensors.sub_state(tensors, "ema"))
    saved = state_tensors.join_tensors(meta.get("callbacks", []), tensors)
    if len(saved) != len(t.callbacks):
        raise RunDirError(
            f"checkpoint has {len(saved)} callback states, the run has {len(t.callbacks)} "
            "callbacks (doctor.* settings changed?)"
        )
    for cb, state in zip(t.callbacks, saved, strict=True):
        cb.load_state_dict(state)
    restore_rng(rng_from_json(meta["rng"]))


def check_resume(run_dir: Path, which: str, model: nn.Module, config: Any) -> Path | None:
    """The checkpoint `--resume which` will load, checked against `model` without loading it.

    Run before anything is written, so a typo, a run whose checkpoints are all damaged, or
    a config whose tensor shapes changed fails with the run directory untouched. Returns None
    for `auto` when there is no checkpoint at all (a fresh start).

    Raises:
        RunDirError: no such checkpoint, all damaged, or shapes that do not fit.
    """
    run_dir = Path(run_dir)
    if which == "auto":
        path = ckpt_dir.auto_resume_checkpoint(run_dir / "checkpoints")
        if path is None:
            return None
    else:
        path = ckpt_dir.resolve_checkpoint(run_dir, which)
    meta = ckpt_files.read_meta(path) or {}
    with safe_open(str(path / ckpt_files.TENSORS), framework="pt") as f:
        saved = {
            k[len("model.") :]: tuple(f.get_slice(k).get_shape())
            for k in f.keys()  # noqa: SIM118 - safe_open is not iterable
            if k.startswith("model.")
        }
    base = set(getattr(model, "base_keys", ()) or ())  # LoRA: frozen base, not in checkpoints
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in base}
    wrong = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if wrong:
        keys = changed_keys(meta.get("config", {}), config_dict(config))
        raise RunDirError(
            f"--resume {which}: checkpoint {path} does not fit the model this config builds "
            f"(changed config keys: {_describe(keys)}; tensors: {_describe(wrong)}). Resume "
            "with the run's own config.yaml, or train into a new --run-dir."
        )
    return path
