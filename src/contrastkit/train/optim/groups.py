"""AdamW with parameter groups: weight decay only on matrices, per-module lr multipliers.

Decay is skipped for biases, norm weights and the loss's temperature / bias scalars
(decaying `logit_scale` towards 0 would push the CLIP temperature towards infinity;
Radford et al. 2021 and open_clip exclude them the same way).

Frozen parameters stay in the groups. AdamW skips a parameter whose `.grad` is None, and
`zero_grad(set_to_none=True)` clears every gradient each step, so a parameter with
`requires_grad=False` is neither updated nor decayed; when a phase unfreezes it, the same
optimizer starts updating it with fresh moments. No optimizer rebuild is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from contrastkit.errors import ConfigError

NO_DECAY_NAMES = ("logit_scale", "logit_bias")


def matches(name: str, prefix: str) -> bool:
    """True when `prefix` names `name` or one of its parent modules (dot boundary)."""
    return name == prefix or name.startswith(prefix + ".")


def named_parameters(modules: Sequence[nn.Module]) -> list[tuple[str, nn.Parameter]]:
    """Parameters of all `modules`, de-duplicated (tied weights appear once)."""
    seen: set[int] = set()
    out = []
    for module in modules:
        for name, p in module.named_parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, p))
    return out


def check_prefixes(prefixes: Iterable[str], key: str, modules: Sequence[nn.Module]) -> None:
    """Raise ConfigError if a prefix matches no parameter of `modules`.

    Args:
        prefixes: module-name prefixes from the config.
        key: config key path of the list, e.g. `train.phases.0.freeze`; the index is added.
        modules: the model and the criterion.
    """
    names = [n for n, _ in named_parameters(modules)]
    for i, prefix in enumerate(prefixes):
        if not any(matches(n, prefix) for n in names):
            top = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"{key}.{i}: {prefix!r} matches no module; top-level modules: {', '.join(top)}"
            )


def check_lr_scale(lr_scale: dict[str, float], modules: Sequence[nn.Module]) -> None:
    """Like `check_prefixes` for the keys of `train.lr_scale`."""
    names = [n for n, _ in named_parameters(modules)]
    for prefix in lr_scale:
        if not any(matches(n, prefix) for n in names):
            top = sorted({n.split(".")[0] for n in names})
            raise ConfigError(
                f"train.lr_scale.{prefix}: matches no module; top-level modules: {', '.join(top)}"
            )


def lr_multiplier(name: str, lr_scale: dict[str, float]) -> float:
    """The multiplier of the longest prefix in `lr_scale` that names `name` (default 1)."""
    best, mult = -1, 1.0
    for prefix, scale in lr_scale.items():
        if matches(name, prefix) and len(prefix) > best:
            best, mult = len(prefix), scale
    return mult


def uses_decay(name: str, p: torch.Tensor) -> bool:
    """Matrices decay; biases, norm weights (1-D) and temperature/bias scalars do not."""
    return p.ndim >= 2 and name.rsplit(".", 1)[-1] not in NO_DECAY_NAMES


def build_optimizer(
    modules: Sequence[nn.Module],
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-6,
    lr_scale: dict[str, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW over every parameter of `modules` (model first, then criterion).

    Each group records `base_lr` (lr x multiplier) for the scheduler and `lr_scale`.

    Raises:
        ConfigError: a key of `lr_scale` names no module.
    """
    lr_scale = dict(lr_scale or {})
    check_lr_scale(lr_scale, modules)
    groups: dict[tuple[float, bool], dict] = {}
    for name, p in named_parameters(modules):
        mult = lr_multiplier(name, lr_scale)
        decay = uses_decay(name, p)
        group = groups.setdefault(
            (mult, decay),
            {
                "params": [],
                "names": [],
                "lr": lr * mult,
                "base_lr": lr * mult,
                "lr_scale": mult,
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        group["params"].append(p)
        group["names"].append(name)
    return torch.optim.AdamW(
        list(groups.values()), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay
    )


# New parameters (the loss's temperature / bias, projections added on pretrained towers)
# train at least at this rate. It is the scratch default `train.lr`: at a fine-tuning rate
# of 5e-5 AdamW moves a parameter by about 5e-5 per step, so a learnable log-temperature
# of 2.66 stays put for a whole epoch (observed 14.28 -> 14.29 in logit scale).
NEW_PARAMS_MIN_LR = 1e-3


def new_params_multiplier(lr: float, scale: float | None) -> float:
    """`train.new_params_lr_scale`, or by default max(1, NEW_PARAMS_MIN_LR / lr)."""
    return float(scale) if scale is not None else max(1.0, NEW_PARAMS_MIN_LR / lr)


def with_new_params(
    lr_scale: dict[str, float],
    new_prefixes: Iterable[str],
    *,
    lr: float,
    scale: float | None = None,
) -> dict[str, float]:
    """`lr_scale` plus the new-parameter multiplier for each of `new_prefixes`.

    A prefix the user lists in `lr_scale` keeps the user's value.
    """
    mult = new_params_multiplier(lr, scale)
    out = {prefix: mult for prefix in new_prefixes if mult != 1.0}
    out.update(lr_scale)
    return out


def _blocks(hf_model: nn.Module) -> tuple[str, int] | None:
    """(name, L) of the ModuleList holding a transformer's L blocks (the longest one)."""
    best: tuple[str, int] | None = None
    for name, module in hf_model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > (best[1] if best else 1):
            best = (name, len(module))
    return best


def layer_decay_scales(model: nn.Module, decay: float | None) -> dict[str, float]:
    """Layer-wise lr decay (ELECTRA, Clark et al. 2020; BEiT) on pretrained transformer
    towers, as `lr_scale` prefixes: block i of L gets decay^(L - i), the embeddings
    decay^(L + 1); the rest of the encoder (final norm, pooler) and everything outside
    pretrained encoders keep 1. Lower blocks hold general features and move least.

    Raises:
        ConfigError: decay is set but no pretrained transformer tower exists.
    """
    if decay is None or decay == 1.0:
        return {}
    scales: dict[str, float] = {}
    for name, module in model.named_modules():
        hf = getattr(module, "model", None)
        if getattr(module, "pretrained", False) is not True or not isinstance(hf, nn.Module):
            continue
        found = _blocks(hf)
        if found is None:
            continue
        blocks, depth = found
        for i in range(depth):
            scales[f"{name}.model.{blocks}.{i}"] = decay ** (depth - i)
        # The outermost `*embeddings` modules (BERT/ViT: top level; CLIP/SigLIP halves: one
        # level down).
        embeddings: list[str] = []
        for sub, _ in hf.named_modules():
            if sub.endswith("embeddings") and not any(matches(sub, e) for e in embeddings):
                embeddings.append(sub)
        for sub in embeddings:
            scales[f"{name}.model.{sub}"] = decay ** (depth + 1)
    if not scales:
        raise ConfigError(
            "train.layer_decay: the model has no pretrained transformer tower "
            "(hf_text, minilm, hf_vision, hf_clip) to decay"
        )
    return scales
