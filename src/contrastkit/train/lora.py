"""LoRA (Hu et al. 2021) on the Hugging Face towers, through `peft`, and the identity of the
frozen base weights that checkpoints then leave out.

`apply_lora` injects adapters (`peft.inject_adapter_in_model`, so module names keep their
place: `...attention.self.query` becomes a LoRA layer holding `base_layer`, `lora_A`,
`lora_B`) into every pretrained encoder that exposes a transformers model as `.model`, and
freezes everything else in those models. The adapters start at zero (`lora_B = 0`), so step
0 is still the pretrained model. The frozen base tensors are listed in `model.base_keys`
(checkpoints skip them; they are rebuilt from the model folder) and `model.base_weights`
records each folder's path and a SHA-256 of its weight files, so a checkpoint can say
which base it adapts. `merge_lora` folds the adapters back into plain layers for export.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from contrastkit.errors import ConfigError

_INSTALL_HINT = "pip install contrastkit[text]"
WEIGHT_SUFFIXES = (".safetensors", ".bin")
_HASH_CHUNK = 1 << 20  # bytes read per hash update


def hf_encoders(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(module name, encoder) of each pretrained encoder holding a transformers `.model`
    (a siamese encoder shared by two towers appears once, under its owner)."""
    for name, module in model.named_modules():
        if getattr(module, "pretrained", False) is True and isinstance(
            getattr(module, "model", None), nn.Module
        ):
            yield name, module


def weights_hash(folder: str | Path) -> str:
    """SHA-256 over the folder's weight files (name and bytes, in name order)."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).iterdir()):
        if path.suffix in WEIGHT_SUFFIXES and path.is_file():
            digest.update(path.name.encode())
            with path.open("rb") as f:
                while chunk := f.read(_HASH_CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def apply_lora(
    model: nn.Module,
    targets: Sequence[str],
    *,
    r: int,
    alpha: float,
    dropout: float,
    where: str = "train.lora",
) -> list[str]:
    """Inject LoRA adapters into every Hugging Face encoder of `model`; returns their names.

    Raises:
        ConfigError: `peft` is missing, the model has no Hugging Face tower, or the targets
            match no module of one of them (names the key and the modules that exist).
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError(f"{where}: LoRA needs the `peft` package: {_INSTALL_HINT}") from None
    encoders = list(hf_encoders(model))
    if not encoders:
        raise ConfigError(
            f"{where}: the model has no Hugging Face tower (hf_text, minilm, hf_vision, hf_clip) "
            "to adapt"
        )
    done = []
    for name, enc in encoders:
        base = enc.get_submodule("model")
        names = [n for n, m in base.named_modules() if isinstance(m, nn.Linear)]
        if not any(_matches(n, t) for n in names for t in targets):
            leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
            raise ConfigError(
                f"{where}.targets: {list(targets)} match no module of {name} "
                f"({type(base).__name__}); its linear layers are named: {', '.join(leaves)}"
            )
        config = LoraConfig(
            target_modules=list(targets),
            r=r,
            # peft annotates lora_alpha as int; a float scales the same (alpha / r).
            lora_alpha=alpha,  # type: ignore[arg-type]
            lora_dropout=dropout,
        )
        inject_adapter_in_model(config, base)
        for pname, p in base.named_parameters():
            p.requires_grad_("lora_" in pname)
        done.append(name)
    record_base(model)
    return done


def record_base(model: nn.Module, frozen: Sequence[str] = ()) -> None:
    """Set `model.base_keys` and `model.base_weights` (encoder name -> {path, sha256}).

    Base tensors are those of the pretrained encoders that never train: every tensor but
    the adapters of a LoRA-adapted encoder, and every tensor of an encoder whose parameters
    all lie under `frozen` (prefixes frozen for the whole run, e.g. LiT's locked tower).
    """
    keys: list[str] = []
    identity: dict[str, dict[str, str]] = {}
    adapted = {n for n, m in model.named_modules() if "lora_A" in dict(m.named_children())}
    for name, enc in hf_encoders(model):
        prefix = f"{name}.model."
        lora = any(a.startswith(prefix) for a in adapted)
        params = [f"{name}.{n}" for n, _ in enc.named_parameters()]
        locked = bool(frozen) and all(any(_under(p, f) for f in frozen) for p in params)
        if not (lora or locked):
            continue
        for key in enc.get_submodule("model").state_dict():
            if locked or "lora_" not in key:
                keys.append(prefix + key)
        path = str(getattr(enc, "path", ""))
        identity[name] = {"path": path, "sha256": weights_hash(path) if path else ""}
    model.base_keys = keys  # type: ignore[assignment]
    model.base_weights = identity  # type: ignore[assignment]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def whole_run_frozen(train: Any) -> list[str]:
    """`train.freeze`, or [] when a phase unfreezes something (then nothing is certain)."""
    if any(phase.unfreeze for phase in train.phases):
        return []
    return list(train.freeze)


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA layer inside `module` into a plain layer (W + B A alpha/r), in place."""
    for name, child in list(module.named_modules()):
        base = getattr(child, "base_layer", None)
        if base is None or not hasattr(child, "merge"):
            continue
        child.merge()
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, base)
    return module


def check_base(saved: dict[str, Any] | None, model: nn.Module, where: str) -> None:
    """Raise ConfigError when a checkpoint adapts different base weights than `model` loaded."""
    current = getattr(model, "base_weights", {}) or {}
    for name, ident in (saved or {}).items():
        mine = current.get(name)
        if mine is not None and ident.get("sha256") and mine["sha256"] != ident["sha256"]:
            raise ConfigError(
                f"{where}: the checkpoint's LoRA adapters for {name} were trained on the weights "
                f"in {ident.get('path')} (sha256 {ident['sha256'][:12]}), but "
                f"{mine['path']} now holds different ones (sha256 {mine['sha256'][:12]})"
            )


def apply_train_lora(model: nn.Module, train: Any) -> list[str]:
    """`apply_lora` as the `train` section says (no `lora`: only record the base weights of
    towers frozen for the whole run, which checkpoints then leave out too)."""
    lora = train.lora
    done = []
    if lora is not None:
        done = apply_lora(model, lora.targets, r=lora.r, alpha=lora.alpha, dropout=lora.dropout)
    record_base(model, whole_run_frozen(train))
    return done
