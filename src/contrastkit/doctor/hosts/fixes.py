"""Fixes in the host's words: the rules' contrastkit config keys, translated per host.

A rule's `fix` maps contrastkit config keys to values (`train.lr: 1e-4`), which is what
`contrastkit train -o` takes. A run trained by another tool has no such keys, so
`translate_findings` rewrites each fix as a sentence in the host's terms (HF
`TrainingArguments(learning_rate=...)`, open_clip's `--lr`, "the optimizer's lr" in a
plain loop), puts it in `fix_note` and keeps the original mapping in
`evidence["contrastkit_fix"]`. `fix` itself is emptied: the report renders it as a
`contrastkit train -o` command, which would be wrong advice for a foreign run.

The table is ordered: the first pattern that matches a key wins; `{v}` is the value,
`{term}` / `{i}` the captured term or objective index. Keys without an entry keep their
contrastkit name with the value, so nothing a rule says is lost.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from contrastkit.doctor.findings import Finding

HOSTS = ("plain", "hf", "sentence_transformers", "lightning", "open_clip")

_LR = {
    "plain": "set your optimizer's lr to {v}",
    "hf": "TrainingArguments(learning_rate={v})",
    "sentence_transformers": "SentenceTransformerTrainingArguments(learning_rate={v})",
    "lightning": "return an optimizer with lr={v} from configure_optimizers",
    "open_clip": "--lr {v}",
}
_TEMPERATURE = {
    "plain": "start the logit scale at 1/{v} (CLIP stores the parameter log(1/{v}))",
    "hf": "CLIPConfig(logit_scale_init_value=log(1/{v})) (2.6592 for 0.07)",
    "sentence_transformers": "MultipleNegativesRankingLoss(model, scale=1/{v}) (the default scale 20 is temperature 0.05)",
    "lightning": "start the logit scale at 1/{v} (the parameter log(1/{v}))",
    "open_clip": "keep open_clip's init (logit scale 1/{v}); check that a checkpoint did not load a scale near 1",
}
_TABLE: list[tuple[str, dict[str, str]]] = [
    (r"train\.lr", _LR),
    (
        r"train\.grad_clip",
        {
            "plain": "clip gradients: torch.nn.utils.clip_grad_norm_(params, {v}) before optimizer.step()",
            "hf": "TrainingArguments(max_grad_norm={v})",
            "sentence_transformers": "SentenceTransformerTrainingArguments(max_grad_norm={v})",
            "lightning": "Trainer(gradient_clip_val={v})",
            "open_clip": "--grad-clip-norm {v}",
        },
    ),
    (
        r"train\.amp",
        {
            "plain": "autocast with torch.bfloat16 instead of float16",
            "hf": "TrainingArguments(bf16=True, fp16=False)",
            "sentence_transformers": "SentenceTransformerTrainingArguments(bf16=True, fp16=False)",
            "lightning": "Trainer(precision='bf16-mixed')",
            "open_clip": "--precision amp_bf16",
        },
    ),
    (
        r"train\.weight_decay",
        {
            "plain": "weight_decay={v} for logit_scale / logit_bias (a no-decay parameter group)",
            "hf": "put logit_scale in the no-decay group (or TrainingArguments(weight_decay={v}))",
            "lightning": "weight_decay={v} for logit_scale / logit_bias in configure_optimizers",
            "open_clip": "open_clip excludes logit_scale from decay; check a custom --wd setup",
        },
    ),
    (
        r"train\.min_lr_ratio",
        {"plain": "a schedule that does not end at lr 0 before training ends (min lr ratio {v})"},
    ),
    (
        r"train\.warmup_steps",
        {
            "plain": "{v} warm-up steps",
            "hf": "TrainingArguments(warmup_steps={v})",
            "open_clip": "--warmup {v}",
        },
    ),
    (
        r"train\.accumulate|train\.accumulation",
        {
            "plain": "more negatives per query: a larger batch, or cached-feature accumulation (GradCache); plain gradient accumulation adds none",
            "hf": "a larger per_device_train_batch_size (gradient_accumulation_steps adds no negatives)",
            "sentence_transformers": "CachedMultipleNegativesRankingLoss with a larger batch (gradient_accumulation_steps adds no negatives)",
            "lightning": "a larger DataLoader batch_size (accumulate_grad_batches adds no negatives)",
            "open_clip": "--accum-freq (open_clip caches features, so it does add negatives)",
        },
    ),
    (
        r"data\.batch_size",
        {
            "plain": "DataLoader(batch_size={v})",
            "hf": "TrainingArguments(per_device_train_batch_size={v})",
            "sentence_transformers": "SentenceTransformerTrainingArguments(per_device_train_batch_size={v})",
            "lightning": "DataLoader(batch_size={v})",
            "open_clip": "--batch-size {v}",
        },
    ),
    (r"loss\.objectives\.(?P<i>\d+)\.temperature", _TEMPERATURE),
    (
        r"loss\.objectives\.(?P<i>\d+)\.learnable_temperature",
        {"plain": "make the logit scale learnable: {v}"},
    ),
    (
        r"loss\.objectives\.(?P<i>\d+)\.max_logit_scale",
        {"plain": "clamp the logit scale at {v} after each optimizer step"},
    ),
    (
        r"loss\.objectives\.(?P<i>\d+)\.init_logit_scale",
        {"plain": "start the SigLIP log scale t' at {v}"},
    ),
    (
        r"loss\.objectives\.(?P<i>\d+)\.init_logit_bias",
        {"plain": "start the SigLIP bias at {v} (log 1/B)"},
    ),
    (r"loss\.objectives\.(?P<i>\d+)\.learnable", {"plain": "learn the SigLIP scale and bias: {v}"}),
    (
        r"loss\.objectives\.(?P<i>\d+)\.weight",
        {"plain": "weight the contrastive term by {v} in your summed loss"},
    ),
    (
        r"loss\.(?P<term>[^.]+)\.weight",
        {"plain": "weight the {term} term by {v} in your summed loss"},
    ),
    (r"train\.freeze", {"plain": "freeze (requires_grad=False) only {v}"}),
    (
        r"train\.phases",
        {"plain": "train in phases: first the new heads with the backbone frozen, then everything"},
    ),
    (r"train\.lr_scale", {"plain": "a larger lr for the backbone's parameter group ({v} x)"}),
    (
        r"train\.new_params_lr_scale",
        {"plain": "a larger lr for the logit scale's parameter group ({v} x the base lr)"},
    ),
    (
        r"model\.towers\.(?P<term>[^.]+)\.projection\.init",
        {
            "plain": "start the {term} projection as the identity (or drop it) to keep the pretrained space"
        },
    ),
]


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def host_fix(key: str, value: Any, host: str) -> str:
    """One contrastkit fix (`key: value`) as a sentence in the host's words.

    Args:
        key: dotted contrastkit config key, e.g. `train.lr`.
        value: the suggested value.
        host: one of `HOSTS`.

    Raises:
        ValueError: an unknown host.
    """
    if host not in HOSTS:
        raise ValueError(f"unknown host {host!r}; known: {list(HOSTS)}")
    for pattern, words in _TABLE:
        m = re.fullmatch(pattern, key)
        if m:
            template = words.get(host, words["plain"])
            return template.format(v=_text(value), **m.groupdict())
    return f"{key} = {_text(value)} (contrastkit's name)"


def _scaled_weights(
    fix: dict[str, Any], evidence: dict[str, Any], weights: Mapping[str, float]
) -> dict[str, Any]:
    """A domination fix in the host's true weights: a host config holds no auxiliary
    term, so the rule assumed weight 1 and proposed contrastive_share / share; scale it
    by the term's real weight."""
    out = dict(fix)
    term = evidence.get("term")
    key = f"loss.{term}.weight"
    if isinstance(term, str) and key in out and term in weights and evidence.get("weight") == 1.0:
        out[key] = float(f"{out[key] * weights[term]:.2g}")
    return out


def translate_findings(
    findings: Iterable[Finding], host: str, *, weights: Mapping[str, float] | None = None
) -> list[Finding]:
    """Findings whose fixes are written for `host` (see the module docstring).

    Args:
        findings: the rules' findings for a `host_config` run.
        host: one of `HOSTS`.
        weights: the host's loss-term weights, so a domination fix names real weights.
    """
    out = []
    for f in findings:
        if not f.fix:
            out.append(f)
            continue
        fix = _scaled_weights(f.fix, f.evidence, weights or {})
        # Several keys can share one host remedy (accumulate and its mode): say it once.
        words = "; ".join(dict.fromkeys(host_fix(k, v, host) for k, v in fix.items()))
        note = f"In your code: {words}." + (f" {f.fix_note}" if f.fix_note else "")
        evidence = {**f.evidence, "contrastkit_fix": fix}
        out.append(dataclasses.replace(f, fix={}, fix_note=note, evidence=evidence))
    return out
