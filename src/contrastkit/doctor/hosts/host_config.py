"""Describe a run trained by another tool as a contrastkit `Config`, so the rules can judge it.

The rules (`doctor/rules`) read a `Config`: the objective (clip or siglip) and its
temperature settings, the learning rate behind the `lr`-based fixes, the warm-up, the
batch size behind chance level, whether the towers are pretrained, and which metric the
at-start comparison reads. A foreign run (a plain PyTorch loop, a Hugging Face
`Trainer`, sentence-transformers, Lightning, an open_clip log) has none of that as a
file, so `host_config` builds one from a few typed facts the host knows. Everything
else keeps contrastkit's defaults, which no rule reads for such a run.

The towers are stand-ins: their encoder type is `host` (nothing is ever built from
this config), `pretrained` marks a pretrained host model, and their projection is
`none` because the host's model, not contrastkit, owns the projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from contrastkit.config import Config, config_from_dict
from contrastkit.errors import ConfigError

# Stream type of the stand-in towers: an encoder name no registry holds, so nothing can
# build a model from a host config by accident.
HOST_ENCODER = "host"
# Value of `pretrained` on the stand-in towers of a pretrained host model; only its
# presence matters to the rules (`worse_than_start` names a from-scratch lr on it).
HOST_PRETRAINED = "(the host's pretrained model)"
# Placeholder manifest: the host owns its data; no rule reads this path.
HOST_MANIFEST = "(the host's data)"


def host_config(
    *,
    batch_size: int,
    objective: Literal["clip", "siglip"] = "clip",
    towers: Sequence[str] = ("a", "b"),
    objective_name: str = "contrastive",
    temperature: float = 0.07,
    learnable_temperature: bool = True,
    max_logit_scale: float = 100.0,
    init_logit_scale: float | None = None,
    init_logit_bias: float | None = None,
    lr: float = 1e-3,
    warmup_steps: int = 0,
    max_steps: int | None = None,
    pretrained: bool = False,
    select_metric: str | None = None,
    select_mode: Literal["max", "min"] = "max",
    amp: Literal["none", "fp16", "bf16"] = "none",
    accumulate: int = 1,
    accumulation: Literal["naive", "cached"] = "naive",
    every: int = 25,
    name: str = "host",
) -> Config:
    """A `Config` that describes a run trained by another tool, for `diagnose`.

    Args:
        batch_size: global batch size (every process's rows of one optimizer step): the
            number of in-batch candidates, so chance level is log(batch_size).
        objective: `clip` (softmax / InfoNCE, also sentence-transformers' MNRL) or
            `siglip` (pairwise sigmoid).
        towers: the two embedding sets' names (e.g. `("image", "text")`); findings and
            signals (`collapse/<tower>/...`) use them.
        objective_name: the contrastive term's name in the signals (`loss/<name>`).
        temperature: the starting softmax temperature (clip); 1 / logit scale.
        learnable_temperature: whether the host learns the temperature (clip).
        max_logit_scale: the host's clamp of the logit scale (clip; CLIP and open_clip: 100).
        init_logit_scale: SigLIP's starting log scale t' (default log 10).
        init_logit_bias: SigLIP's starting bias (default -10).
        lr: the host's peak learning rate; `lr`-based fixes are multiples of it.
        warmup_steps: the host's warm-up, so `lr_zero` ignores the warm-up's zero rate.
        max_steps: the planned steps, when known.
        pretrained: the host fine-tunes a pretrained model (the at-start rules then name
            a from-scratch learning rate as a cause).
        select_metric: the evaluation key `watcher.evaluate` reports that the at-start
            comparison reads (e.g. `val/R@1`); None: the default name of the towers' pair.
        select_mode: `max` when higher values of `select_metric` are better.
        amp: the host's mixed precision (`fp16` adds the bf16 fix to `loss_nan`).
        accumulate: micro-batches per optimizer step (HF `gradient_accumulation_steps`,
            Lightning `accumulate_grad_batches`).
        accumulation: `naive` (summed gradients: what those hosts do; adds no negatives)
            or `cached` (cached features, GradCache / open_clip `--accum-freq` /
            CachedMNRL: the negatives span the whole step).
        every: steps between signal records.
        name: the run's name (report title).

    Returns:
        A validated `Config`.

    Raises:
        ConfigError: an argument out of range (the message names it).
    """
    if batch_size < 1:
        raise ConfigError(f"host_config: batch_size must be >= 1, got {batch_size}")
    if len(towers) != 2 or towers[0] == towers[1]:
        raise ConfigError(f"host_config: towers must be two different names, got {list(towers)}")
    encoder: dict[str, Any] = {"type": HOST_ENCODER}
    if pretrained:
        encoder["pretrained"] = HOST_PRETRAINED
    tower_cfg = {
        t: {
            "streams": {"text" if i == 0 else "text_b": dict(encoder)},
            "projection": {"type": "none"},
        }
        for i, t in enumerate(towers)
    }
    obj: dict[str, Any] = {"type": objective, "name": objective_name, "towers": list(towers)}
    if objective == "clip":
        obj.update(
            temperature=temperature,
            learnable_temperature=learnable_temperature,
            max_logit_scale=max_logit_scale,
        )
    elif objective == "siglip":
        obj["learnable"] = learnable_temperature
        if init_logit_scale is not None:
            obj["init_logit_scale"] = init_logit_scale
        if init_logit_bias is not None:
            obj["init_logit_bias"] = init_logit_bias
    else:
        raise ConfigError(f"host_config: objective must be 'clip' or 'siglip', got {objective!r}")
    train: dict[str, Any] = {
        "lr": lr,
        "warmup_steps": warmup_steps,
        # warmup_steps 0 would fall back to the fraction's default; the host's warm-up is known
        "warmup_fraction": 0.0,
        "amp": amp,
        "accumulate": accumulate,
        "accumulation": accumulation,
        "select_mode": select_mode,
    }
    if max_steps is not None:
        train["max_steps"] = max_steps
    if select_metric is not None:
        train["select_metric"] = select_metric
    data = {
        "name": name,
        "data": {"manifest": HOST_MANIFEST, "batch_size": batch_size},
        "model": {"towers": tower_cfg},
        "loss": {"objectives": [obj]},
        "train": train,
        "doctor": {"every": every},
    }
    return config_from_dict(data, source="host_config(...)")
