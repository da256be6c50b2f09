"""Which logged tag feeds which doctor signal: each host's tag names, and `--map`.

A *target* is a name the doctor understands, independent of the host:

| target | signal (docs/doctor.md "Signals") | conversion |
|---|---|---|
| `loss` | `loss/total` | none |
| `contrastive_loss` | `loss/<objective>` | none |
| `caption_loss`, `distill_loss`, `masked_loss`, `classifier_loss` | `loss/<term>` and `share/<term>` | none (hosts log them weighted) |
| `logit_scale` | `<objective>/logit_scale` | none: the multiplier exp(t) = 1/tau |
| `temperature` | `<objective>/logit_scale` | 1 / tau |
| `log_logit_scale` | `<objective>/logit_scale` | exp(t) (the parameter t = log(1/tau)) |
| `logit_bias` | `<objective>/logit_bias` | none |
| `lr` | `lr/max` (largest over the lr tags of a step) | none |
| `grad_norm` | `grad_norm/model` | none |
| `val/<name>` | the evaluation metric `val/<name>` | none |

contrastkit's `<objective>/logit_scale` is the multiplier exp(t) that the logits are
scaled by (`losses/clip.py` logs `scale()`), and so are open_clip's `train/scale` and
`train/logit_scale` (its model returns `logit_scale.exp()`): those pass unchanged. Only a
tag mapped as `temperature` or `log_logit_scale` is converted, once, here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from contrastkit.doctor.logs.source import HF_TRAINER, LIGHTNING, OPEN_CLIP, PLAIN
from contrastkit.errors import ContrastkitError

# Auxiliary loss targets -> contrastkit's term names (config.loss.auxiliary_terms()).
AUX_TERMS = {
    "caption_loss": "captioning",
    "distill_loss": "distillation",
    "masked_loss": "masked",
    "classifier_loss": "classification",
}
SCALE_TARGETS: dict[str, Callable[[float], float]] = {
    "logit_scale": lambda v: v,
    "temperature": lambda v: 1.0 / v if v != 0 else math.inf,
    "log_logit_scale": math.exp,
}
TARGETS = (
    "loss",
    "contrastive_loss",
    *AUX_TERMS,
    *SCALE_TARGETS,
    "logit_bias",
    "lr",
    "grad_norm",
)
VAL = "val/"

# Each host's own tag names (exact), from its logging code.
HOST_TAGS: dict[str, dict[str, str]] = {
    # open_clip_train/train.py: log_data, prefixed "train/"; newer main renames scale.
    OPEN_CLIP: {
        "train/loss": "loss",
        "train/contrastive_loss": "contrastive_loss",
        "train/caption_loss": "caption_loss",
        "train/distill_loss": "distill_loss",
        "train/scale": "logit_scale",
        "train/logit_scale": "logit_scale",
        "train/logit_bias": "logit_bias",
        "train/lr": "lr",
    },
    # Trainer.log entries (trainer_state.json) and TensorBoardCallback's rewrite of them.
    HF_TRAINER: {
        "loss": "loss",
        "learning_rate": "lr",
        "grad_norm": "grad_norm",
        "train/loss": "loss",
        "train/learning_rate": "lr",
        "train/grad_norm": "grad_norm",
    },
    # Lightning: names are the user's `self.log` keys; these are the common ones, plus
    # LearningRateMonitor's `lr-<Optimizer>` (handled by prefix below).
    LIGHTNING: {
        "loss": "loss",
        "train_loss": "loss",
        "train_loss_step": "loss",
        "train/loss": "loss",
    },
    # Plain tables name the targets themselves.
    PLAIN: {t: t for t in TARGETS},
}
# Evaluation tags per host: prefix -> the metric name follows it.
VAL_PREFIXES: dict[str, tuple[str, ...]] = {
    OPEN_CLIP: ("val/",),
    HF_TRAINER: ("eval_", "eval/"),
    LIGHTNING: ("val_", "val/"),
    PLAIN: ("val/", "val_"),
}
# Evaluation entries that are coordinates or timings, not metrics: open_clip adds
# `epoch` and `num_samples` to its val metrics; HF adds its speed metrics (exact names).
NOT_METRICS = frozenset(
    {"epoch", "num_samples", "runtime", "samples_per_second", "steps_per_second"}
)
LIGHTNING_LR_PREFIX = "lr-"  # LearningRateMonitor: lr-AdamW, lr-AdamW/pg1, ...


def parse_maps(items: Iterable[str]) -> dict[str, str]:
    """`--map name=tag` arguments as {tag: target}.

    Raises:
        ContrastkitError: an item without '=', or a name that is no target.
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, tag = item.partition("=")
        name, tag = name.strip(), tag.strip()
        if not sep or not name or not tag:
            raise ContrastkitError(
                f"--map {item!r}: expected NAME=TAG, e.g. --map logit_scale=train/temp "
                f"(names: {', '.join(TARGETS)}, or val/<metric>)"
            )
        if name not in TARGETS and not (name.startswith(VAL) and len(name) > len(VAL)):
            raise ContrastkitError(
                f"--map {item!r}: {name!r} is not a signal name; use one of "
                f"{', '.join(TARGETS)}, or val/<metric> for an evaluation metric"
            )
        out[tag] = name
    return out


def target_of(tag: str, host: str, maps: dict[str, str]) -> str | None:
    """The target a tag feeds (a name of `TARGETS` or `val/<metric>`), None if ignored.

    `--map` wins over the host's names; then the host's exact names; then its
    evaluation prefixes and Lightning's lr-monitor prefix.
    """
    if tag in maps:
        return maps[tag]
    known = HOST_TAGS[host].get(tag)
    if known is not None:
        return known
    for prefix in VAL_PREFIXES[host]:
        name = tag[len(prefix) :]
        if tag.startswith(prefix) and name and name not in NOT_METRICS:
            return VAL + name
    if host == LIGHTNING and tag.startswith(LIGHTNING_LR_PREFIX):
        return "lr"
    return None
